"""h2's discarded "Received frame" line renders nothing; every other ``repr`` is hyperframe's."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from types import FrameType
from typing import Any

import pytest
from h2.config import DummyLogger, H2Configuration, OutputLogger
from h2.connection import ConnectionState, H2Connection
from h2.errors import ErrorCodes
from h2.events import ConnectionTerminated, DataReceived, Event, RequestReceived, StreamEnded
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    WindowUpdateFrame,
)
from hypothesis import given
from hypothesis import strategies as st

import bugless_core.grpc._cork  # noqa: F401  (installs the shim, as every gRPC connection does)
from bugless_core._compat import h2 as compat

HYPERFRAME_REPR = compat._original


class RecordingLogger(DummyLogger):
    """A logger that keeps its trace lines (a DummyLogger subclass that does log)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def trace(self, *vargs: Any, **kwargs: Any) -> None:
        self.lines.append(vargs[0] % vargs[1:])


def _request_bytes() -> bytes:
    """What a client sends for one gRPC-like request: preface, SETTINGS, HEADERS, DATA."""
    client = H2Connection(H2Configuration(client_side=True))
    client.initiate_connection()
    client.send_headers(
        1, [(":method", "POST"), (":path", "/x"), (":scheme", "https"), (":authority", "a")]
    )
    client.send_data(1, b"\x00\x00\x00\x00\x05hello", end_stream=True)
    return client.data_to_send()


@pytest.fixture
def original_renderings() -> Iterator[list[str]]:
    """Every call of hyperframe's own ``Frame.__repr__`` while the test runs (by its code)."""
    seen: list[str] = []
    code = HYPERFRAME_REPR.__code__

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if event == "call" and frame.f_code is code:
            seen.append(type(frame.f_locals["self"]).__name__)

    sys.setprofile(profile)
    try:
        yield seen
    finally:
        sys.setprofile(None)


def _serve(logger: DummyLogger | OutputLogger | None) -> list[Event]:
    server = H2Connection(H2Configuration(client_side=False, logger=logger))
    server.initiate_connection()
    return server.receive_data(_request_bytes())


def test_installed_by_the_grpc_transport() -> None:
    assert compat.installed()
    assert compat.install()


def test_frames_received_without_a_logger_are_not_rendered(original_renderings: list[str]) -> None:
    events = _serve(None)

    assert [type(e) for e in events[-3:]] == [RequestReceived, DataReceived, StreamEnded]
    assert original_renderings == []


def test_a_logger_that_logs_gets_every_frame_rendered_by_hyperframe(
    original_renderings: list[str],
) -> None:
    logger = RecordingLogger()
    _serve(logger)

    assert original_renderings == ["SettingsFrame", "HeadersFrame", "DataFrame"]
    received = [line for line in logger.lines if line.startswith("Received frame: ")]
    assert received[1].startswith(
        "Received frame: HeadersFrame(stream_id=1, flags=['END_HEADERS'])"
    )
    assert received[2] == (
        "Received frame: DataFrame(stream_id=1, flags=['END_STREAM']): <hex:000000000568656c6c6f>"
    )
    assert not any(compat.NOT_RENDERED in line for line in logger.lines)


def test_h2s_own_output_logger_at_trace_level_shows_the_frames() -> None:
    out = io.StringIO()
    _serve(OutputLogger(file=out, trace_level=True))

    assert "h2 (trace): Received frame: DataFrame(stream_id=1" in out.getvalue()
    assert compat.NOT_RENDERED not in out.getvalue()


def _frames() -> st.SearchStrategy[Frame]:
    data = st.binary(max_size=40)
    return st.one_of(
        st.builds(lambda d: DataFrame(1, data=d), data),
        st.builds(lambda d: DataFrame(3, data=d, flags=("END_STREAM",)), data),
        st.builds(lambda d: HeadersFrame(5, data=d, flags=("END_HEADERS", "END_STREAM")), data),
        st.builds(lambda n: WindowUpdateFrame(0, window_increment=n), st.integers(1, 2**31 - 1)),
        st.builds(lambda d: PingFrame(0, opaque_data=d, flags=("ACK",)), st.binary(max_size=8)),
    )


@given(_frames())
def test_repr_anywhere_else_is_hyperframes(frame: Frame) -> None:
    assert repr(frame) == HYPERFRAME_REPR(frame)
    assert str(frame) == HYPERFRAME_REPR(frame)
    assert f"{frame!r}" == (
        f"{type(frame).__name__}(stream_id={frame.stream_id}, flags={frame.flags!r}): "
        f"{frame._body_repr()}"
    )


def _renders_elsewhere_too(self: Any, frame: Frame) -> None:
    self.config.logger.trace("Received frame: %s", repr(frame))
    self.last = repr(frame)


def _renders_only_for_trace(self: Any, frame: Frame) -> None:
    self.config.logger.trace("Received frame: %s", repr(frame))
    self.handled = frame


def _prints(*vargs: Any) -> None:
    print(*vargs)


def _returns_none(*vargs: Any) -> None:
    """A docstring only."""


def test_an_h2_that_uses_the_rendering_otherwise_is_refused() -> None:
    assert compat.renders_only_for_trace(H2Connection._receive_frame)
    assert compat.renders_only_for_trace(_renders_only_for_trace)
    assert not compat.renders_only_for_trace(_renders_elsewhere_too)
    assert not compat.renders_only_for_trace(len)


def test_a_trace_that_does_something_is_refused() -> None:
    assert compat.trace_is_a_no_op(DummyLogger.trace)
    assert compat.trace_is_a_no_op(_returns_none)
    assert not compat.trace_is_a_no_op(_prints)
    assert not compat.trace_is_a_no_op(OutputLogger.trace)


def _received(connection: H2Connection, frame: Frame) -> list[Event]:
    return connection.receive_data(frame.serialize())


def _client_with_a_stream() -> H2Connection:
    client = H2Connection(H2Configuration(client_side=True))
    client.initiate_connection()
    client.send_headers(
        1, [(":method", "POST"), (":path", "/"), (":scheme", "http"), (":authority", "a")]
    )
    return client


def test_a_graceful_goaway_leaves_the_connection_open_for_the_streams_it_answers() -> None:
    client = _client_with_a_stream()
    compat.keep_streams_on_graceful_goaway(client)
    (event,) = _received(client, GoAwayFrame(stream_id=0, last_stream_id=1, error_code=0))
    assert isinstance(event, ConnectionTerminated)
    assert (event.error_code, event.last_stream_id) == (ErrorCodes.NO_ERROR, 1)
    assert client.state_machine.state is not ConnectionState.CLOSED
    # Stream 1's answer still arrives.
    server_side = HeadersFrame(1, flags=["END_HEADERS"])
    server_side.data = client.encoder.encode([(":status", "200")])
    events = _received(client, server_side)
    assert [type(event).__name__ for event in events] == ["ResponseReceived"]


def test_a_goaway_with_an_error_closes_the_connection_as_h2_does() -> None:
    client = _client_with_a_stream()
    compat.keep_streams_on_graceful_goaway(client)
    (event,) = _received(client, GoAwayFrame(stream_id=0, last_stream_id=1, error_code=2))
    assert isinstance(event, ConnectionTerminated)
    assert client.state_machine.state is ConnectionState.CLOSED


def test_an_h2_without_the_frame_table_is_reported() -> None:
    client = _client_with_a_stream()
    del client._frame_dispatch_table
    with pytest.raises(compat.H2SurfaceChanged, match="_frame_dispatch_table"):
        compat.keep_streams_on_graceful_goaway(client)


def test_only_a_connection_whose_logger_does_nothing_may_receive_quietly() -> None:
    def server(logger: DummyLogger | OutputLogger | None) -> H2Connection:
        return H2Connection(H2Configuration(client_side=False, logger=logger))

    assert compat.receiving_quietly(server(None))
    assert compat.receiving_quietly(server(DummyLogger()))
    assert not compat.receiving_quietly(server(RecordingLogger()))
    assert not compat.receiving_quietly(server(OutputLogger(trace_level=True)))


def test_frames_received_quietly_are_not_rendered(original_renderings: list[str]) -> None:
    receiving = compat.RECEIVING
    before, receiving.quiet = receiving.quiet, True
    try:
        events = _serve(None)
    finally:
        receiving.quiet = before

    assert [type(e) for e in events[-3:]] == [RequestReceived, DataReceived, StreamEnded]
    assert original_renderings == []
