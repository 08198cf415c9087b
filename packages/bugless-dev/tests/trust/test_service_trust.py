"""Service-to-service trust on a real stack: mutual TLS, identities and ACCESS tables.

The Model and the Authenticator run as subprocesses (``bugless model serve``,
``bugless auth serve``) with the certificates :class:`~bugless_dev.pki.LocalPki`
issues, exactly as ``bugless dev`` and the chart run them. Callers here are
real gRPC clients presenting each service's certificate (or none).
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
from collections.abc import AsyncIterator, Collection, Mapping
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

from bugless_api.server import SERVICE_CLASSES
from bugless_auth.servicer import AuthenticatorServicer
from bugless_core.assertions import METADATA_KEY, sign_assertion
from bugless_core.clients import ActingFor, ServiceAddress, acting_model
from bugless_core.errors import from_grpc_error
from bugless_core.grpc import ANY_CLIENT, SERVICE_IDENTITIES
from bugless_core.model.servicer import ModelServicer
from bugless_dev.stack import LocalStack
from bugless_notify.service import NotifierService
from bugless_proto import DESCRIPTOR_POOL, v1

#: The servicer of every ``bugless.v1`` service, and who may call it at all.
SERVICERS: dict[str, type] = {
    "bugless.v1.Model": ModelServicer,
    "bugless.v1.Authenticator": AuthenticatorServicer,
    "bugless.v1.Notifier": NotifierService,
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
    # The import job signs in the person running it (``bugless import --user``).
    assert set(auth["AuthenticatePassword"]) == {"web", "@import"}
    # A person's sessions are theirs to see on the web (an administrator's tool too).
    assert set(auth["ListSessions"]) == set(auth["EndSession"]) == {"web", "@admin"}


@pytest.fixture(scope="module")
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
    bugless_stack: LocalStack, people: Assertions, channels: list[Channel]
) -> None:
    stub = v1.ModelStub(_as(bugless_stack, "model", "notify", channels))
    # The notifier reads as a recipient, by an assertion it asks for.
    auth = v1.AuthenticatorStub(_as(bugless_stack, "auth", "notify", channels))
    bob = await auth.issue_assertion(v1.IssueAssertionRequest(user_id=people.bob_id), timeout=10)
    with pytest.raises(GRPCError) as refused:
        await stub.create_issue(
            v1.CreateIssueRequest(caller=v1.Caller(user_id="u", admin=True)), timeout=10
        )
    assert refused.value.status is Status.PERMISSION_DENIED
    components = await stub.list_components(
        v1.ListComponentsRequest(), timeout=10, metadata={METADATA_KEY: bob.assertion}
    )
    assert components is not None


async def test_the_notifier_cannot_name_groups_only_assertions_carry_them(
    bugless_stack: LocalStack, people: Assertions, channels: list[Channel]
) -> None:
    """Groups the notifier names are dropped; its recipients' come from their assertions."""
    stub = v1.ModelStub(_as(bugless_stack, "model", "notify", channels))
    auth = v1.AuthenticatorStub(_as(bugless_stack, "auth", "notify", channels))
    claimed = v1.Caller(user_id=people.bob_id, groups=["admins"])
    with pytest.raises(GRPCError) as hidden:
        await stub.get_issue(
            v1.GetIssueRequest(caller=claimed, issue_id=people.secret_issue), timeout=10
        )
    assert hidden.value.status is Status.NOT_FOUND, "a group the notifier names is believed"
    notifier = v1.Caller(user_id="bugless-notify", admin=True)
    bob = (
        await auth.issue_assertion(v1.IssueAssertionRequest(user_id=people.bob_id), timeout=10)
    ).assertion
    admin = (
        await auth.issue_assertion(v1.IssueAssertionRequest(user_id=people.admin_id), timeout=10)
    ).assertion
    views = await stub.get_notification_views(
        v1.GetNotificationViewsRequest(
            caller=notifier,
            issue_id=people.secret_issue,
            viewer_assertions=[bob, admin],
            viewers=[claimed],
        ),
        timeout=10,
    )
    assert [v.user_id for v in views.viewers] == [people.admin_id]
    with pytest.raises(GRPCError) as forged:
        await stub.get_notification_views(
            v1.GetNotificationViewsRequest(
                caller=notifier,
                issue_id=people.secret_issue,
                viewer_assertions=[admin, bob[:-4] + "AAAA"],
            ),
            timeout=10,
        )
    assert forged.value.status is Status.UNAUTHENTICATED
    assert "viewer_assertions[1]" in (forged.value.message or "")
    refusal = from_grpc_error(forged.value)
    assert (refusal.reason, refusal.metadata.get("field")) == (
        "INVALID_ASSERTION",
        "viewer_assertions[1]",
    )


async def test_a_viewer_whose_session_ended_is_refused_with_the_reason_and_the_field(
    bugless_stack: LocalStack, people: Assertions, channels: list[Channel]
) -> None:
    """The notifier learns which viewer's assertion was refused, and that its session ended.

    The reason (SESSION_ENDED, not INVALID_ASSERTION) says a new assertion
    may do; the ``field`` metadata says for which recipient.
    """
    carol = bugless_stack.add_user(f"trust-carol-{secrets.token_hex(3)}", PASSWORD)
    web_auth = v1.AuthenticatorStub(_as(bugless_stack, "auth", "web", channels))
    signed_in = await web_auth.authenticate_password(
        v1.AuthenticatePasswordRequest(username=carol["username"], password=PASSWORD),
        timeout=30,
    )
    assert signed_in.identity is not None
    notify_auth = v1.AuthenticatorStub(_as(bugless_stack, "auth", "notify", channels))
    admin = (
        await notify_auth.issue_assertion(
            v1.IssueAssertionRequest(user_id=people.admin_id), timeout=10
        )
    ).assertion
    model = v1.ModelStub(_as(bugless_stack, "model", "notify", channels))
    request = v1.GetNotificationViewsRequest(
        caller=v1.Caller(user_id="bugless-notify", admin=True),
        issue_id=people.secret_issue,
        viewer_assertions=[admin, signed_in.identity.assertion],
    )

    async def views() -> None:
        await model.get_notification_views(request, timeout=10)

    await views()
    await web_auth.revoke_sessions(v1.RevokeSessionsRequest(token=signed_in.token), timeout=10)
    refused = await _refused_within(views)
    assert refused is not None, "an ended session's assertion still stands for a viewer"
    assert refused.status is Status.UNAUTHENTICATED
    refusal = from_grpc_error(refused)
    assert (refusal.reason, refusal.metadata.get("field")) == (
        "SESSION_ENDED",
        "viewer_assertions[1]",
    )
    assert "viewer_assertions[1]" in refusal.message


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


# ---- identity assertions (issue 14.2) ----

PASSWORD = "correct horse battery staple"


@dataclasses.dataclass
class Assertions:
    """Two people, an issue only admins may see, and the stack's signing key."""

    admin_id: str
    bob_id: str
    secret_issue: int
    key: Ed25519PrivateKey


@pytest.fixture(scope="module")
async def people(bugless_stack: LocalStack) -> Assertions:
    tag = secrets.token_hex(3)
    admin = bugless_stack.add_user(f"trust-admin-{tag}", PASSWORD, admin=True)
    bob = bugless_stack.add_user(f"trust-bob-{tag}", PASSWORD)
    channel = bugless_stack.model.channel()
    try:
        model = bugless_stack.acting_model(v1.ModelStub(channel))
        caller = v1.Caller(user_id=admin["user_id"])
        component = await model.create_component(
            v1.CreateComponentRequest(
                caller=caller,
                name=f"TrustSecret-{tag}",
                acl=[v1.AclEntry(principal=v1.Principal(group="admins"), role=v1.Role.ADMIN)],
            ),
            timeout=30,
        )
        issue = await model.create_issue(
            v1.CreateIssueRequest(
                caller=caller, fields=v1.IssueFields(title="secret", component_id=component.id)
            ),
            timeout=30,
        )
    finally:
        channel.close()
    key_file = bugless_stack.env["BUGLESS_AUTH_TOKEN_KEY_FILES"]
    key_pem = await asyncio.to_thread(Path(key_file).read_bytes)
    key = serialization.load_pem_private_key(key_pem, None)
    assert isinstance(key, Ed25519PrivateKey)
    return Assertions(admin["user_id"], bob["user_id"], issue.id, key)


async def _get_secret(
    stack: LocalStack, people: Assertions, channels: list[Channel], assertion: str | None
) -> v1.Issue:
    stub = v1.ModelStub(_as(stack, "model", "web", channels))
    # The request claims to be an admin: only the assertion may say who it is.
    request = v1.GetIssueRequest(
        caller=v1.Caller(user_id=people.admin_id, groups=["admins"], admin=True),
        issue_id=people.secret_issue,
    )
    metadata = {METADATA_KEY: assertion} if assertion is not None else None
    return await stub.get_issue(request, timeout=10, metadata=metadata)


def _signed(people: Assertions, key: Ed25519PrivateKey, **options: Any) -> str:
    assertion, _ = sign_assertion(
        key,
        user_id=options.pop("user_id", people.admin_id),
        groups=options.pop("groups", ["admins"]),
        permissions=options.pop("permissions", ["admin"]),
        session_id="",
        issuer="bugless-auth",
        **options,
    )
    return assertion


async def test_a_valid_assertion_names_the_caller(
    bugless_stack: LocalStack, people: Assertions, channels: list[Channel]
) -> None:
    issue = await _get_secret(bugless_stack, people, channels, _signed(people, people.key))
    assert issue.id == people.secret_issue


async def test_an_admin_flag_no_assertion_backs_does_nothing(
    bugless_stack: LocalStack, people: Assertions, channels: list[Channel]
) -> None:
    with pytest.raises(GRPCError) as anonymous:
        await _get_secret(bugless_stack, people, channels, None)
    assert anonymous.value.status is not Status.OK
    # Bob's own assertion (no admin in it), in a request that says admin.
    bob = _signed(people, people.key, user_id=people.bob_id, groups=[], permissions=[])
    with pytest.raises(GRPCError) as as_bob:
        await _get_secret(bugless_stack, people, channels, bob)
    assert as_bob.value.status is Status.NOT_FOUND


@pytest.mark.parametrize(
    "forge",
    ["other-key", "expired", "wrong-audience", "tampered", "garbage"],
)
async def test_forged_expired_or_misdirected_assertions_are_unauthenticated(
    forge: str, bugless_stack: LocalStack, people: Assertions, channels: list[Channel]
) -> None:
    if forge == "other-key":
        assertion = _signed(people, Ed25519PrivateKey.generate())
    elif forge == "expired":
        assertion = _signed(people, people.key, now=time.time() - 3600)
    elif forge == "wrong-audience":
        assertion = _signed(people, people.key, audience="bugless-something-else")
    elif forge == "tampered":
        header, _, signature = _signed(people, people.key, user_id=people.bob_id).split(".")
        claims = _signed(people, people.key).split(".")[1]
        assertion = f"{header}.{claims}.{signature}"
    else:
        assertion = "not.an.assertion"
    with pytest.raises(GRPCError) as refused:
        await _get_secret(bugless_stack, people, channels, assertion)
    assert refused.value.status is Status.UNAUTHENTICATED, refused.value.message


async def test_an_assertion_replayed_after_sign_out_is_refused(
    bugless_stack: LocalStack, people: Assertions, channels: list[Channel]
) -> None:
    auth = v1.AuthenticatorStub(_as(bugless_stack, "auth", "web", channels))
    admin = await auth.get_users(v1.GetUsersRequest(user_ids=[people.admin_id]), timeout=10)
    signed_in = await auth.authenticate_password(
        v1.AuthenticatePasswordRequest(username=admin.users[0].username, password=PASSWORD),
        timeout=30,
    )
    assert signed_in.identity is not None
    assertion = signed_in.identity.assertion
    assert (await _get_secret(bugless_stack, people, channels, assertion)).id
    await auth.revoke_sessions(v1.RevokeSessionsRequest(token=signed_in.token), timeout=10)
    # The Model re-reads the ended sessions every --assertion-refresh-seconds (5).
    deadline = time.monotonic() + 30
    refused: GRPCError | None = None
    while refused is None and time.monotonic() < deadline:
        try:
            await _get_secret(bugless_stack, people, channels, assertion)
        except GRPCError as exc:
            refused = exc
        await asyncio.sleep(0.5)
    assert refused is not None, "the ended session's assertion still works"
    assert refused.status is Status.UNAUTHENTICATED
    assert "session has ended" in (refused.message or "")


async def test_only_allowed_services_get_assertions_for_a_user(
    bugless_stack: LocalStack, people: Assertions, channels: list[Channel]
) -> None:
    request = v1.IssueAssertionRequest(user_id=people.bob_id)
    for service in ("web", "api"):
        stub = v1.AuthenticatorStub(_as(bugless_stack, "auth", service, channels))
        with pytest.raises(GRPCError) as refused:
            await stub.issue_assertion(request, timeout=10)
        assert refused.value.status is Status.PERMISSION_DENIED
    notify = v1.AuthenticatorStub(_as(bugless_stack, "auth", "notify", channels))
    answer = await notify.issue_assertion(request, timeout=10)
    assert answer.assertion
    assert answer.user is not None
    assert answer.user.user_id == people.bob_id


async def _refused_within(call: Any, *, seconds: float = 30.0) -> GRPCError | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            await call()
        except GRPCError as exc:
            return exc
        await asyncio.sleep(0.5)
    return None


async def test_an_assertion_a_service_got_for_a_user_ends_when_the_user_is_disabled(
    bugless_stack: LocalStack, people: Assertions, channels: list[Channel]
) -> None:
    carol = bugless_stack.add_user(f"trust-carol-{secrets.token_hex(3)}", PASSWORD)
    notify_auth = v1.AuthenticatorStub(_as(bugless_stack, "auth", "notify", channels))
    request = v1.IssueAssertionRequest(user_id=carol["user_id"])
    issued = await notify_auth.issue_assertion(request, timeout=10)
    model = v1.ModelStub(_as(bugless_stack, "model", "notify", channels))

    async def read_as_carol() -> None:
        await model.list_components(
            v1.ListComponentsRequest(), timeout=10, metadata={METADATA_KEY: issued.assertion}
        )

    await read_as_carol()
    web_auth = v1.AuthenticatorStub(_as(bugless_stack, "auth", "web", channels))
    admin = await web_auth.get_users(v1.GetUsersRequest(user_ids=[people.admin_id]), timeout=10)
    signed_in = await web_auth.authenticate_password(
        v1.AuthenticatePasswordRequest(username=admin.users[0].username, password=PASSWORD),
        timeout=30,
    )
    await web_auth.set_user_disabled(
        v1.SetUserDisabledRequest(token=signed_in.token, username=carol["username"], disabled=True),
        timeout=10,
    )
    # Not only sessions she signed in with: the one IssueAssertion opened for
    # the notifier ends too, within the Model's --assertion-refresh-seconds.
    refused = await _refused_within(read_as_carol)
    assert refused is not None, "a disabled user's service-issued assertion still works"
    assert refused.status is Status.UNAUTHENTICATED
    assert "session has ended" in (refused.message or "")
    with pytest.raises(GRPCError) as no_new_one:
        await notify_auth.issue_assertion(request, timeout=10)
    assert no_new_one.value.status is Status.PERMISSION_DENIED


async def test_a_service_acting_for_a_user_gets_a_new_assertion_after_sign_out_everywhere(
    bugless_stack: LocalStack, channels: list[Channel]
) -> None:
    dave = bugless_stack.add_user(f"trust-dave-{secrets.token_hex(3)}", PASSWORD)
    notify_auth = v1.AuthenticatorStub(_as(bugless_stack, "auth", "notify", channels))
    acting = ActingFor(notify_auth)
    model = acting_model(v1.ModelStub(_as(bugless_stack, "model", "notify", channels)), acting)
    caller = v1.Caller(user_id=dave["user_id"])
    await model.list_components(v1.ListComponentsRequest(caller=caller), timeout=10)
    first = await acting.assertion(dave["user_id"])
    web_auth = v1.AuthenticatorStub(_as(bugless_stack, "auth", "web", channels))
    signed_in = await web_auth.authenticate_password(
        v1.AuthenticatePasswordRequest(username=dave["username"], password=PASSWORD), timeout=30
    )
    await web_auth.revoke_sessions(
        v1.RevokeSessionsRequest(token=signed_in.token, everywhere=True), timeout=10
    )
    stub = v1.ModelStub(_as(bugless_stack, "model", "notify", channels))
    refused = await _refused_within(
        lambda: stub.list_components(
            v1.ListComponentsRequest(), timeout=10, metadata={METADATA_KEY: first}
        )
    )
    assert refused is not None
    assert refused.status is Status.UNAUTHENTICATED
    # The acting stub drops the ended assertion and asks for a new one.
    await model.list_components(v1.ListComponentsRequest(caller=caller), timeout=10)
    assert await acting.assertion(dave["user_id"]) != first
