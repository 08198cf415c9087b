"""Service-to-service trust on a real stack: mutual TLS, identities and ACCESS tables.

The Model and the Authenticator run as subprocesses (``bugless model serve``,
``bugless auth serve``) with the certificates :class:`~bugless_dev.pki.LocalPki`
issues, exactly as ``bugless dev`` and the chart run them. Callers here are
real gRPC clients presenting each service's certificate (or none).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Collection, Mapping
from pathlib import Path

import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

from bugless_api.server import SERVICE_CLASSES
from bugless_auth.servicer import AuthenticatorServicer
from bugless_core.clients import ServiceAddress
from bugless_core.grpc import ANY_CLIENT, SERVICE_IDENTITIES
from bugless_core.model.servicer import ModelServicer
from bugless_dev.stack import LocalStack
from bugless_proto import DESCRIPTOR_POOL, v1

#: The servicer of every ``bugless.v1`` service, and who may call it at all.
SERVICERS: dict[str, type] = {
    "bugless.v1.Model": ModelServicer,
    "bugless.v1.Authenticator": AuthenticatorServicer,
}
for _api_service in SERVICE_CLASSES:
    _base = next(b for b in _api_service.__mro__ if b.__name__.endswith("Base"))
    SERVICERS["bugless.v1." + _base.__name__.removesuffix("Base")] = _api_service


def _services() -> list[str]:
    """Every service of every ``bugless/v1`` file, including ones added later."""
    names: list[str] = []
    for file_name in sorted(_proto_files()):
        descriptor = DESCRIPTOR_POOL.FindFileByName(file_name)
        names += [f"{descriptor.package}.{name}" for name in descriptor.services_by_name]
    return names


def _proto_files() -> set[str]:
    from bugless_proto import __file__ as proto_init

    root = Path(proto_init).parent.parent.parent / "proto"
    found = {str(p.relative_to(root)) for p in root.glob("bugless/v1/*.proto")}
    assert "bugless/v1/model.proto" in found, f"no .proto files under {root}"
    return found


def test_every_rpc_of_every_service_has_an_access_row() -> None:
    missing: list[str] = []
    for service in _services():
        servicer = SERVICERS.get(service)
        assert servicer is not None, f"{service} has no servicer listed here: add it"
        table: Mapping[str, Collection[str]] | None = getattr(servicer, "ACCESS", None)
        assert table is not None, f"{servicer.__name__} has no ACCESS table"
        for method in DESCRIPTOR_POOL.FindServiceByName(service).methods:
            row = table.get(method.name)
            if not row:
                missing.append(f"{service}/{method.name}")
            else:
                known = {*SERVICE_IDENTITIES, ANY_CLIENT, "@admin", "@import"}
                assert set(row) <= known, f"{service}/{method.name}: {set(row) - known}"
    assert missing == [], "RPCs without a row in their servicer's ACCESS table"


def test_the_model_and_the_authenticator_rows_say_who_calls_them() -> None:
    model, auth = ModelServicer.ACCESS, AuthenticatorServicer.ACCESS
    callers = set().union(*model.values())
    assert callers <= {"web", "api", "notify", "@admin", "@import"}
    assert all(
        "notify" not in row
        for name, row in model.items()
        if name.startswith(
            ("Create", "Change", "Batch Change", "Update", "Delete", "Add", "Remove", "Rank", "Set")
        )
    )
    assert set(auth["AuthenticateCertificate"]) == {"api"}
    assert set(auth["AuthenticatePassword"]) == {"web"}


@pytest.fixture
async def channels(bugless_stack: LocalStack) -> AsyncIterator[list[Channel]]:
    opened: list[Channel] = []
    yield opened
    for channel in opened:
        channel.close()


def _as(stack: LocalStack, kind: str, identity: str, opened: list[Channel]) -> Channel:
    channel = stack.client_address(kind, identity).channel()
    opened.append(channel)
    return channel


async def test_the_frontends_identity_reaches_the_model(
    bugless_stack: LocalStack, channels: list[Channel]
) -> None:
    reply = await v1.ModelStub(_as(bugless_stack, "model", "web", channels)).get_server_info(
        v1.GetServerInfoRequest(), timeout=10
    )
    assert reply.backend == "postgres"


@pytest.mark.parametrize("identity", ["admin", "auth", "model"])
async def test_other_identities_cannot_call_the_model(
    identity: str, bugless_stack: LocalStack, channels: list[Channel]
) -> None:
    stub = v1.ModelStub(_as(bugless_stack, "model", identity, channels))
    with pytest.raises(GRPCError) as refused:
        await stub.get_issue(v1.GetIssueRequest(caller=v1.Caller(admin=True), issue_id=1))
    assert refused.value.status is Status.PERMISSION_DENIED


async def test_the_notifier_reads_but_cannot_write(
    bugless_stack: LocalStack, channels: list[Channel]
) -> None:
    stub = v1.ModelStub(_as(bugless_stack, "model", "notify", channels))
    with pytest.raises(GRPCError) as refused:
        await stub.create_issue(
            v1.CreateIssueRequest(caller=v1.Caller(user_id="u", admin=True)), timeout=10
        )
    assert refused.value.status is Status.PERMISSION_DENIED
    components = await stub.list_components(
        v1.ListComponentsRequest(caller=v1.Caller(user_id="nobody")), timeout=10
    )
    assert components is not None


async def test_only_the_api_may_run_the_certificate_flow(
    bugless_stack: LocalStack, channels: list[Channel]
) -> None:
    bot = bugless_stack.add_bot("trust-bot")
    for identity in ("web", "notify", "admin"):
        stub = v1.AuthenticatorStub(_as(bugless_stack, "auth", identity, channels))
        with pytest.raises(GRPCError) as refused:
            await stub.authenticate_certificate(
                v1.AuthenticateCertificateRequest(certificate_der=bot.der), timeout=10
            )
        assert refused.value.status is Status.PERMISSION_DENIED, identity


async def test_a_bot_certificate_is_not_a_service(
    bugless_stack: LocalStack, channels: list[Channel]
) -> None:
    bot = bugless_stack.add_bot("trust-bot-2")
    address = dataclasses.replace(bugless_stack.auth, cert=bot.cert, key=bot.key)
    channel = address.channel()
    channels.append(channel)
    with pytest.raises(GRPCError) as refused:
        await v1.AuthenticatorStub(channel).authenticate_certificate(
            v1.AuthenticateCertificateRequest(certificate_der=bot.der), timeout=10
        )
    assert refused.value.status is Status.PERMISSION_DENIED


@pytest.mark.parametrize("kind", ["model", "auth"])
async def test_plaintext_and_certificate_less_callers_are_refused_in_the_handshake(
    kind: str, bugless_stack: LocalStack, channels: list[Channel]
) -> None:
    port = bugless_stack.first(kind).port
    plaintext = ServiceAddress("127.0.0.1", port).channel()
    no_certificate = ServiceAddress("127.0.0.1", port, ca=bugless_stack.pki.ca_file).channel()
    channels += [plaintext, no_certificate]
    for channel in (plaintext, no_certificate):
        with pytest.raises((GRPCError, StreamTerminatedError, OSError)):
            await v1.ModelStub(channel).get_server_info(v1.GetServerInfoRequest(), timeout=10)
