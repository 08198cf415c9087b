from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Server
from prometheus_client import CollectorRegistry

from bugless_core.clients import (
    CALL_TALLY,
    CallTally,
    ServiceAddress,
    acting_as,
    call,
    call_errors,
    method_missing,
    refused_alone,
    warn_if_insecure,
)
from bugless_core.errors import (
    BuglessError,
    IssueVersionConflict,
    MethodNotServed,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from bugless_core.grpc import (
    GrpcServerSettings,
    GrpcServiceRunner,
    grpc_errors,
    handler_errors,
    listening_port,
)
from bugless_proto import v1


class ConflictingModel(v1.ModelBase):
    @grpc_errors
    async def get_issue(self, message: v1.GetIssueRequest) -> v1.Issue:
        raise IssueVersionConflict(message.issue_id, 1, 4)

    async def watch(self, message: v1.WatchRequest) -> AsyncIterator[v1.WatchEvent]:
        """One event, then a failure as the request says (a stream handler's errors)."""
        with handler_errors("watch"):
            yield v1.WatchEvent(subscribed=True)
            if message.issue_id == 1:
                raise NotFound("issue 1 not found")
            raise RuntimeError("a secret detail of a bug")

    async def get_server_info(self, message: v1.GetServerInfoRequest) -> v1.GetServerInfoResponse:
        """Never answers: the caller's deadline passes first (cancelled at close)."""
        await asyncio.Event().wait()
        raise AssertionError("the deadline passes first")


@pytest.fixture
async def model_address() -> AsyncIterator[ServiceAddress]:
    runner = GrpcServiceRunner(
        [ConflictingModel()],
        GrpcServerSettings(insecure_local=True, drain_seconds=0),
        name="clients-test",
        metrics_registry=CollectorRegistry(),
    )
    await runner.start()
    yield ServiceAddress("127.0.0.1", runner.port)
    await runner.close()


def test_addresses_parse_host_and_port() -> None:
    assert ServiceAddress.parse("model.bugless.svc:50051") == ServiceAddress(
        "model.bugless.svc", 50051
    )
    assert ServiceAddress.parse("[::1]:7").host == "::1"
    with pytest.raises(ValueError, match="not host:port"):
        ServiceAddress.parse("model")
    with pytest.raises(ValueError, match="not host:port"):
        ServiceAddress.parse("model:5005\N{SUPERSCRIPT TWO}")


async def test_errors_arrive_as_the_bugless_error_the_server_raised(
    model_address: ServiceAddress,
) -> None:
    channel = model_address.channel()
    try:
        with pytest.raises(IssueVersionConflict) as info:
            await call(v1.ModelStub(channel).get_issue, v1.GetIssueRequest(issue_id=9))
        assert info.value.current_version == 4
    finally:
        channel.close()


async def test_an_unreachable_service_is_unavailable() -> None:
    channel = ServiceAddress("127.0.0.1", 1).channel()
    try:
        with pytest.raises(Unavailable, match="unreachable"):
            await call(v1.ModelStub(channel).get_issue, v1.GetIssueRequest(issue_id=1))
    finally:
        channel.close()


async def test_a_call_past_its_deadline_did_not_get_an_answer_in_time(
    model_address: ServiceAddress,
) -> None:
    """The service was reached and is slow. Before: "a backend service is unreachable: "."""
    channel = model_address.channel()
    try:
        with pytest.raises(Unavailable) as late:
            await call(
                v1.ModelStub(channel).get_server_info, v1.GetServerInfoRequest(), timeout=0.2
            )
        assert late.value.message == "a backend service did not answer within the call's deadline"
        stream = v1.ModelStub(channel).get_server_info(v1.GetServerInfoRequest(), timeout=0.2)
        with pytest.raises(Unavailable) as broke, call_errors("the model service stream broke"):
            await stream
        assert broke.value.message == (
            "the model service stream broke: no answer within the call's deadline"
        )
    finally:
        channel.close()


async def _read_watch(address: ServiceAddress, issue_id: int) -> list[v1.WatchEvent]:
    channel = address.channel()
    events: list[v1.WatchEvent] = []
    try:
        with call_errors("the model service stream broke"):
            async for event in v1.ModelStub(channel).watch(v1.WatchRequest(issue_id=issue_id)):
                events.append(event)
    finally:
        channel.close()
    return events


async def test_a_stream_handlers_bugless_error_reaches_the_reader_as_itself(
    model_address: ServiceAddress,
) -> None:
    with pytest.raises(NotFound, match="issue 1 not found"):
        await _read_watch(model_address, 1)


async def test_an_unexpected_error_in_a_stream_is_internal_without_its_details(
    model_address: ServiceAddress, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(BuglessError) as caught:
        await _read_watch(model_address, 2)
    assert caught.value.message == "internal error in watch; the server log has details"
    assert "secret" not in caught.value.message
    assert "a secret detail of a bug" in caplog.text


async def test_a_stream_from_an_unreachable_service_is_unavailable() -> None:
    with pytest.raises(Unavailable, match=r"^the model service stream broke: "):
        await _read_watch(ServiceAddress("127.0.0.1", 1), 1)


def test_the_insecure_local_warning_writes_an_ipv6_backend_in_brackets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before: 'reaches the model service at ::1:7', which reads as one address."""
    warn_if_insecure("web", model=ServiceAddress("::1", 7))
    assert "web reaches the model service at [::1]:7 with --insecure-local" in caplog.text


async def test_a_method_the_server_does_not_serve_is_told_apart_from_a_failure(
    model_address: ServiceAddress,
) -> None:
    """A server of an earlier release lacks the RPCs added since: an upgrade, not an outage.

    The test's server serves the Model only, so the Authenticator's
    GetUserGroups is a path it does not map, as an Authenticator of the
    release before it answers the Model's CheckViewers.
    """
    channel = model_address.channel()
    try:
        with pytest.raises(GRPCError) as missing:
            await v1.AuthenticatorStub(channel).get_user_groups(
                v1.GetUserGroupsRequest(user_ids=["u_1"])
            )
        assert (missing.value.status, missing.value.message) == (
            Status.UNIMPLEMENTED,
            "method /bugless.v1.Authenticator/GetUserGroups is not served by this server; "
            "is it of an earlier release?",
        )
        assert method_missing(missing.value)
        with pytest.raises(GRPCError) as failed:
            await v1.ModelStub(channel).get_issue(v1.GetIssueRequest(issue_id=9))
        assert not method_missing(failed.value)
    finally:
        channel.close()
    assert not method_missing(GRPCError(Status.UNKNOWN, "something else"))


async def test_a_method_a_server_of_an_earlier_release_does_not_serve_is_missing_too() -> None:
    """A bugless server before unserved methods were named answered as grpclib's ``Server`` does.

    That is bare headers, which grpclib's client reads as UNKNOWN "Missing
    content-type header": a plain grpclib server answers so still.
    """
    server = Server([ConflictingModel()])
    await server.start("127.0.0.1", 0)
    channel = ServiceAddress("127.0.0.1", listening_port(server)).channel()
    try:
        with pytest.raises(GRPCError) as missing:
            await v1.AuthenticatorStub(channel).get_user_groups(
                v1.GetUserGroupsRequest(user_ids=["u_1"])
            )
        assert (missing.value.status, missing.value.message) == (
            Status.UNKNOWN,
            "Missing content-type header",
        )
        assert method_missing(missing.value)
    finally:
        channel.close()
        server.close()
        await server.wait_closed()


async def test_a_bare_answer_of_an_earlier_release_is_named_by_the_route_called() -> None:
    """The server to upgrade and the method are named from the route when the answer names neither.

    A Model of the release before CheckViewers answers it with bare headers
    (docs/upgrades.md); 7ab1207e's API told the bot "the Model does not serve
    CheckViewers … upgrade the Model first" and 47927215's generic mapping
    said "the server called does not serve the method … upgrade it first",
    naming neither. Through :func:`call` (any frontend's call) the refusal
    names both, as a newer server's named answer does.
    """
    server = Server([ConflictingModel()])
    await server.start("127.0.0.1", 0)
    channel = ServiceAddress("127.0.0.1", listening_port(server)).channel()
    try:
        with pytest.raises(MethodNotServed) as missing:
            await call(
                v1.AuthenticatorStub(channel).get_user_groups,
                v1.GetUserGroupsRequest(user_ids=["u_1"]),
            )
        with pytest.raises(IssueVersionConflict):  # a route served: its own error, untouched
            await call(v1.ModelStub(channel).get_issue, v1.GetIssueRequest(issue_id=1))
    finally:
        channel.close()
        server.close()
        await server.wait_closed()
    assert missing.value.message == (
        "the Authenticator does not serve GetUserGroups, so it is of a release older than "
        "its caller's: upgrade the Authenticator first, as docs/upgrades.md orders"
    )
    assert missing.value.metadata == {
        "service": "bugless.v1.Authenticator",
        "method": "GetUserGroups",
    }


class SessionEndingModel(v1.ModelBase):
    """Reads and a write that run, and a read and a write refused as of an ended session."""

    async def search_issues(self, message: v1.SearchIssuesRequest) -> v1.SearchIssuesResponse:
        return v1.SearchIssuesResponse()

    async def create_hotlist(self, message: v1.CreateHotlistRequest) -> v1.Hotlist:
        return v1.Hotlist(id=1, name=message.name)

    @grpc_errors
    async def change_issue(self, message: v1.ChangeIssueRequest) -> v1.ChangeIssueResponse:
        raise Unauthenticated("the session has ended", reason="SESSION_ENDED")

    @grpc_errors
    async def get_issue(self, message: v1.GetIssueRequest) -> v1.Issue:
        raise Unauthenticated("the session has ended", reason="SESSION_ENDED")


async def _refused(model: v1.ModelStub, route: str) -> None:
    refused = (
        call(model.change_issue, v1.ChangeIssueRequest(issue_id=1))
        if route == "change"
        else call(model.get_issue, v1.GetIssueRequest(issue_id=1))
    )
    with pytest.raises(Unauthenticated):
        await refused


@pytest.mark.parametrize(
    ("before", "refused", "alone"),
    [
        ([], "change", True),
        (["search"], "change", True),  # a look-up first: harmless to repeat
        (["search", "search"], "get", True),
        (["change"], "change", True),  # a write refused too ran nothing
        (["hotlist"], "change", False),  # a write ran: making it all again repeats it
        (["hotlist"], "get", False),
        (["search", "hotlist", "search"], "change", False),
    ],
)
async def test_a_refused_call_is_alone_unless_a_write_the_request_sent_may_have_run(
    before: list[str], refused: str, alone: bool
) -> None:
    """What the API answers SESSION_RENEWED ("make it again") by: only writes count.

    Before, every call carrying the assertion counted, so a write refused
    after a username look-up was answered "read first" where making it
    again was safe.
    """
    runner = GrpcServiceRunner(
        [SessionEndingModel()],
        GrpcServerSettings(insecure_local=True, drain_seconds=0),
        name="clients-tally-test",
        metrics_registry=CollectorRegistry(),
    )
    await runner.start()
    channel = ServiceAddress("127.0.0.1", runner.port).channel()  # forwards assertions
    model = v1.ModelStub(channel)
    counting = CALL_TALLY.set(CallTally())
    try:
        with acting_as("an-assertion"):
            for kind in before:
                if kind == "search":
                    await call(model.search_issues, v1.SearchIssuesRequest())
                elif kind == "hotlist":
                    await call(model.create_hotlist, v1.CreateHotlistRequest(name="h"))
                else:
                    await _refused(model, "change")
            await _refused(model, refused)
            assert refused_alone() is alone
    finally:
        CALL_TALLY.reset(counting)
        channel.close()
        await runner.close()
