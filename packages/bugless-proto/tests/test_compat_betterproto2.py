"""betterproto2's private surface, as bugless_proto uses it, is where the compat module says.

These fail with a message naming the attribute and the betterproto2 version
when an upgrade moves one; the simulated upgrades below prove that they would.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import betterproto2
import pytest
from betterproto2.grpclib.grpclib_client import ServiceStub
from grpclib.testing import ChannelFor

from bugless_proto import _compat_betterproto2 as compat
from bugless_proto import v1
from bugless_proto.stubs import UnaryUnaryInterceptor

T = TypeVar("T")


def test_the_installed_betterproto2_has_every_item() -> None:
    compat.verify()


def test_field_metadata_is_read_as_the_converter_needs_it() -> None:
    fields = {info.name: info for info in compat.fields_of(v1.Issue)}
    assert fields["status"].value_class is v1.Status
    assert fields["cc"].repeated
    assert not fields["cc"].presence
    assert fields["created_at"].presence
    assert fields["created_at"].unwrapped is not None
    assert fields["created_at"].unwrapped.__name__ == "Timestamp"
    key = {info.name: info for info in compat.fields_of(v1.GetComponentRequest)}["path"]
    assert (key.group, key.presence) == ("key", True)


def test_unknown_fields_are_read_and_written() -> None:
    message = v1.User(user_id="u_1")
    assert compat.unknown_fields(message) == b""
    compat.set_unknown_fields(message, b"\xa0\x3e\x01")
    assert bytes(message).endswith(b"\xa0\x3e\x01")


def test_a_moved_field_default_lookup_is_reported_with_the_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(betterproto2.Message, "_get_field_default")
    with pytest.raises(compat.BetterprotoSurfaceChanged) as caught:
        compat.verify()
    message = str(caught.value)
    assert (
        f"betterproto2 {compat.BETTERPROTO2_VERSION}: Message._get_field_default is gone" in message
    )
    assert "bugless_proto._compat_betterproto2" in message


def test_a_changed_stub_hook_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    async def send(self: ServiceStub, request: Any, route: str) -> Any:
        raise AssertionError("never called")

    monkeypatch.setattr(ServiceStub, "_unary_unary", send)
    with pytest.raises(compat.BetterprotoSurfaceChanged, match=r"ServiceStub\._unary_unary takes"):
        compat.verify()


def test_extra_instance_state_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    original = betterproto2.Message.__post_init__

    def post_init(self: betterproto2.Message) -> None:
        original(self)
        self._serialized_on_wire = False  # type: ignore[attr-defined]  # as betterproto 1 had

    monkeypatch.setattr(betterproto2.Message, "__post_init__", post_init)
    with pytest.raises(compat.BetterprotoSurfaceChanged, match=r"Message\.__dict__ holds"):
        compat.verify()


class _Model(v1.ModelBase):
    async def get_server_info(self, message: v1.GetServerInfoRequest) -> v1.GetServerInfoResponse:
        return v1.GetServerInfoResponse(backend="in-memory")


class _RecordingStub(UnaryUnaryInterceptor, v1.ModelStub):
    routes: list[str]

    async def intercept_unary_unary(
        self,
        send: Callable[..., Awaitable[T]],
        route: str,
        request: Any,
        response_type: type[T],
        **options: Any,
    ) -> T:
        self.routes.append(route)
        return await send(route, request, response_type, **options)


async def test_every_unary_call_of_a_stub_goes_through_the_interceptor() -> None:
    async with ChannelFor([_Model()]) as channel:
        stub = _RecordingStub(channel)
        stub.routes = []
        reply = await stub.get_server_info(v1.GetServerInfoRequest(), timeout=5)
    assert reply.backend == "in-memory"
    assert stub.routes == ["/bugless.v1.Model/GetServerInfo"]


def _fresh_interpreter(script: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()


def test_importing_bugless_proto_leaves_pydantic_unimported_and_importable() -> None:
    """betterproto2 imports pydantic only for pydantic-dataclass messages, which
    bugless' are not; every bugless process saves its memory."""
    script = (
        "import sys, bugless_proto, betterproto2; from bugless_proto import v1; "
        "assert bytes(v1.Issue(id=3)) == b'\\x08\\x03'; "
        "print('pydantic' in sys.modules, betterproto2.pydantic is None, end=' '); "
        "import pydantic; print(pydantic.BaseModel.__name__)"
    )
    assert _fresh_interpreter(script) == "False True BaseModel"


def test_pydantic_imported_first_is_left_to_betterproto2() -> None:
    script = (
        "import pydantic, betterproto2, bugless_proto; from bugless_proto import v1; "
        "print(betterproto2.pydantic is pydantic, bytes(v1.Issue(id=3)) == b'\\x08\\x03')"
    )
    assert _fresh_interpreter(script) == "True True"
