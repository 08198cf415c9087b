"""The frame ``repr`` shim renders exactly what hyperframe renders, without the whole payload."""

from __future__ import annotations

import binascii
from collections.abc import Iterator

import pytest
from hyperframe import frame as hyperframe_frame
from hyperframe.frame import DataFrame
from hypothesis import given
from hypothesis import strategies as st

import bugless_core.grpc._cork  # noqa: F401  (installs the shim, as every gRPC connection does)
from bugless_core._compat import hyperframe as compat


def _hyperframe_6_1(data: bytes | None) -> str:
    """hyperframe 6.1's own ``_raw_data_repr``, as shipped (hex of everything, then cut)."""
    if not data:
        return "None"
    r = binascii.hexlify(data).decode("ascii")
    if len(r) > 20:
        r = r[:20] + "..."
    return "<hex:" + r + ">"


@given(st.binary(max_size=64))
def test_same_text_as_hyperframe_for_any_payload(data: bytes) -> None:
    assert compat.raw_data_repr(data) == _hyperframe_6_1(data)
    assert compat.raw_data_repr(memoryview(data)) == _hyperframe_6_1(data)


def test_none_and_empty() -> None:
    assert compat.raw_data_repr(None) == "None" == _hyperframe_6_1(None)
    assert compat.raw_data_repr(b"") == "None"


def test_installed_by_the_grpc_transport_and_used_by_frame_repr() -> None:
    assert compat.installed()
    chunk = bytes(range(256)) * 2048  # 512 KiB, an attachment chunk
    frame = DataFrame(1, data=chunk)
    assert repr(frame) == f"DataFrame(stream_id=1, flags=[]): {_hyperframe_6_1(chunk)}"


@given(st.binary(max_size=40), st.one_of(st.none(), st.integers(0, 255)))
def test_a_data_frame_renders_as_its_whole_serialized_body(data: bytes, pad: int | None) -> None:
    frame = DataFrame(1, data=data, pad_length=pad or 0)
    if pad is not None:
        frame.flags.add("PADDED")
    assert compat.data_body_repr(frame) == _hyperframe_6_1(frame.serialize_body())


@pytest.fixture
def changed_hyperframe() -> Iterator[None]:
    """A hyperframe whose rendering differs (a simulated upgrade), then the real one back.

    The shim is already installed (importing the transport did it): the
    upgrade also brings DataFrame back to the rendering it inherits.
    """
    current = hyperframe_frame._raw_data_repr
    data_body = DataFrame.__dict__.get("_body_repr")
    hyperframe_frame._raw_data_repr = lambda data: f"<{len(data or b'')} bytes>"
    if data_body is not None:
        del DataFrame._body_repr
    try:
        yield
    finally:
        hyperframe_frame._raw_data_repr = current
        if data_body is not None:
            DataFrame._body_repr = data_body  # type: ignore[method-assign]


@pytest.mark.usefixtures("changed_hyperframe")
def test_a_hyperframe_that_renders_differently_keeps_its_own() -> None:
    assert not compat.install()
    assert not compat.installed()
    assert repr(DataFrame(1, data=b"abc")).endswith(": <3 bytes>")


def test_a_hyperframe_without_the_function_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(hyperframe_frame, "_raw_data_repr")
    assert not compat.install()
    assert not compat.installed()
