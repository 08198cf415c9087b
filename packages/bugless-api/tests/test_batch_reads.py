"""Batched GetIssue: concurrent reads share Model calls and answer as single reads do.

Everything is real: the stack's Model on PostgreSQL and its Authenticator,
API frontends over mutual TLS. :class:`IssueReader` is also driven directly
against the real Model, through a wrapper that only counts the calls.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable
from typing import Any, cast

import pytest
from api_support import UPB_REFUSES, Bots, ConnectAs, acl, extra_api, signed_in

from bugless_api._coalesce import IssueReader
from bugless_api._users import UserDirectory
from bugless_api._wire_issues import BATCH_GET_ISSUES
from bugless_api.server import RunningApi
from bugless_core.clients import ServiceAddress, call
from bugless_core.errors import BuglessError, Unavailable
from bugless_proto import v1, wire


@pytest.fixture(scope="module")
async def unbatched_api(bots: Bots) -> AsyncIterator[RunningApi]:
    """A second frontend with batching off: the reference answers."""
    async with extra_api(bots, batch_reads=False) as running:
        yield running


async def _outcome(coro: Awaitable[object]) -> object:
    """The issue, or the error's class and message: what a client can observe."""
    try:
        return await coro
    except BuglessError as exc:
        return (type(exc).__name__, exc.message, dict(exc.metadata))


async def test_concurrent_reads_answer_exactly_as_unbatched_reads(
    connect_as: ConnectAs, unbatched_api: RunningApi
) -> None:
    """Visible, repeated, missing, invisible and invalid ids, fired at once."""
    boss, robot = connect_as("boss"), connect_as("robot")
    await robot.whoami()
    secret = await boss.create_component(
        f"Hidden-{secrets.token_hex(3)}", acl=[acl(v1.Principal(user="boss"), v1.Role.ADMIN)]
    )
    hidden = await boss.create_issue("not for robots", secret.id)
    open_component = await robot.create_component(f"Open-{secrets.token_hex(3)}")
    issues = [
        await robot.create_issue(f"batched {n}", open_component.id, assignee="boss", cc=["robot"])
        for n in range(12)
    ]
    ids = [i.id for i in issues] + [issues[0].id, hidden.id, 987_654_321, 0, -5]

    batched = await asyncio.gather(*(_outcome(robot.get_issue(i)) for i in ids))
    reference_client = connect_as("robot", port=unbatched_api.port)
    reference = await asyncio.gather(*(_outcome(reference_client.get_issue(i)) for i in ids))

    assert batched == reference
    first = batched[0]
    assert isinstance(first, v1.Issue)
    assert (first.reporter, first.assignee, first.cc) == ("robot", "boss", ["robot"])
    assert batched[12] == batched[0]  # the same id twice in one batch
    assert batched[13] == (
        "NotFound",
        f"issue {hidden.id} not found",
        {"issue_id": str(hidden.id)},
    )
    not_found, invalid, also_invalid = batched[14:17]
    assert isinstance(not_found, tuple)
    assert not_found[0] == "NotFound"
    assert isinstance(invalid, tuple)
    assert isinstance(also_invalid, tuple)
    assert invalid[0] == also_invalid[0] == "InvalidArgument"


async def test_a_read_sees_a_change_that_completed_before_it(connect_as: ConnectAs) -> None:
    robot = connect_as("robot")
    component = await robot.create_component(f"Fresh-{secrets.token_hex(3)}")
    issue = await robot.create_issue("before", component.id)
    for n in range(5):
        changed = await robot.update_issue(issue.id, title=f"after {n}")
        assert changed.issue is not None
        seen, *_ = await asyncio.gather(
            robot.get_issue(issue.id), *(robot.get_issue(issue.id) for _ in range(5))
        )
        assert (seen.title, seen.version) == (f"after {n}", changed.issue.version)


async def test_a_masked_batch_get_beside_batched_reads_changes_neither(
    connect_as: ConnectAs,
) -> None:
    """GetIssue takes no mask and only GetIssue calls are batched: a masked
    BatchGetIssues of the same caller, at the same moment, trims only its own answer."""
    robot = connect_as("robot")
    component = await robot.create_component(f"Mixed-{secrets.token_hex(3)}")
    issues = [
        await robot.create_issue(f"mixed {n}", component.id, description="whole", cc=["boss"])
        for n in range(4)
    ]
    ids = [i.id for i in issues]

    singles, masked = await asyncio.gather(
        asyncio.gather(*(robot.get_issue(i) for i in ids)),
        robot.batch_get_issues(ids, read_mask=["title"]),
    )

    assert singles == issues
    assert [(i.id, i.title, i.description, i.cc) for i in masked.issues] == [
        (i.id, i.title, "", []) for i in issues
    ]


class _CountingModel:
    """The real Model's BatchGetIssues, counting calls and their sizes.

    ``refused``: its replies carry :data:`UPB_REFUSES`, so upb refuses them.
    """

    def __init__(self, stub: v1.ModelStub, *, refused: bool = False) -> None:
        self.stub = stub
        self.sizes: list[int] = []
        self.suffix = UPB_REFUSES if refused else b""

    async def batch_get(self, request: v1.BatchGetIssuesRequest) -> Any:
        self.sizes.append(len(request.issue_ids))
        # The stack's acting stub asserts the request's caller; the reply is then
        # handed over as the gateway's call hands it over (its codec's ``FromString``).
        reply = await call(self.stub.batch_get_issues, request, timeout=30)
        return BATCH_GET_ISSUES.parse(wire.encode(reply) + self.suffix)


async def test_reads_of_one_caller_share_model_calls(bots: Bots, connect_as: ConnectAs) -> None:
    robot = connect_as("robot")
    me = await robot.whoami()
    component = await robot.create_component(
        f"Shared-{secrets.token_hex(3)}", acl=[acl(v1.Principal(user="robot"), v1.Role.ADMIN)]
    )
    ids = [(await robot.create_issue(f"shared {n}", component.id)).id for n in range(40)]
    channel = bots.stack.model.channel()
    auth_channel = bots.stack.auth.channel()
    try:
        model = _CountingModel(bots.stack.acting_model(v1.ModelStub(channel)))
        users = UserDirectory(v1.AuthenticatorStub(auth_channel), timeout_seconds=30)
        reader = IssueReader(model.batch_get, users, max_batch=16, max_in_flight=1)
        assert me.user is not None
        caller = v1.Caller(user_id=me.user.user_id, groups=list(me.groups))
        read = await asyncio.gather(*(reader.get(caller, i) for i in ids))
        assert [i.id for i in read] == ids
        assert {i.reporter for i in read} == {"robot"}
        # 40 reads, at most 16 distinct ids per call, one call at a time.
        assert sum(model.sizes) == 40
        assert max(model.sizes) <= 16
        assert len(model.sizes) <= 4

        # Another caller in the same loop turn gets its own batch and its own view.
        outsider = await connect_as("outsider").whoami()
        assert outsider.user is not None
        other = v1.Caller(user_id=outsider.user.user_id, groups=[])
        mixed = await asyncio.gather(
            _outcome(reader.get(caller, ids[0])), _outcome(reader.get(other, ids[0]))
        )
        assert isinstance(mixed[0], v1.Issue)
        assert mixed[1] == ("NotFound", f"issue {ids[0]} not found", {"issue_id": str(ids[0])})
        await reader.close()
    finally:
        channel.close()
        auth_channel.close()


async def test_a_batch_upb_refuses_is_read_by_betterproto2_and_answered_alike(
    bots: Bots, connect_as: ConnectAs
) -> None:
    """The same Model reply, once as upb reads it and once with a field upb refuses."""
    robot, _boss = await signed_in(connect_as, "robot", "boss")
    me = await robot.whoami()
    assert me.user is not None
    caller = v1.Caller(user_id=me.user.user_id, groups=list(me.groups))
    component = await robot.create_component(
        f"Refused-{secrets.token_hex(3)}", acl=[acl(v1.Principal(user="robot"), v1.Role.ADMIN)]
    )
    owner = await robot.create_custom_field(component.id, "Owner", v1.CustomFieldType.USER)
    owned = [v1.CustomFieldValue(field_id=owner.id, values=["boss"])]
    issues = [
        await robot.create_issue(
            f"refused {n}", component.id, assignee="boss", cc=["robot"], custom_fields=owned
        )
        for n in range(3)
    ]
    ids = [i.id for i in issues] + [987_654_321]
    channel = bots.stack.model.channel()
    auth_channel = bots.stack.auth.channel()
    try:
        users = UserDirectory(v1.AuthenticatorStub(auth_channel), timeout_seconds=30)
        answers: list[list[object]] = []
        for refused in (False, True):
            model = _CountingModel(bots.stack.acting_model(v1.ModelStub(channel)), refused=refused)
            reader = IssueReader(model.batch_get, users)
            answers.append(await asyncio.gather(*(_outcome(reader.get(caller, i)) for i in ids)))
            assert model.sizes == [len(ids)]
            await reader.close()
    finally:
        channel.close()
        auth_channel.close()
    upb, fallback = answers
    assert all(isinstance(i, wire.Encoded) for i in upb[:3])
    assert not any(isinstance(i, wire.Encoded) for i in fallback[:3])
    upb_bytes = [i.SerializeToString() for i in upb[:3] if isinstance(i, wire.Encoded)]
    assert [wire.encode(i) for i in fallback[:3] if isinstance(i, v1.Issue)] == upb_bytes
    assert fallback == upb  # decodes the upb path's issues
    first = fallback[0]
    assert isinstance(first, v1.Issue)
    custom = [list(v.values) for v in first.custom_fields]
    assert (first.reporter, first.assignee, first.cc, custom) == (
        "robot",
        "boss",
        ["robot"],
        [["boss"]],
    )
    missing = fallback[3]
    assert isinstance(missing, tuple)
    assert missing[0] == "NotFound"


class _HeldModel(_CountingModel):
    """The real Model's BatchGetIssues; one caller's calls wait until released."""

    def __init__(self, stub: v1.ModelStub, held_user: str) -> None:
        super().__init__(stub)
        self.held_user = held_user
        self.release = asyncio.Event()
        self.called = asyncio.Event()
        self.callers: list[str] = []

    async def batch_get(self, request: v1.BatchGetIssuesRequest) -> Any:
        assert request.caller is not None
        self.callers.append(request.caller.user_id)
        self.called.set()
        if request.caller.user_id == self.held_user:
            await self.release.wait()
        return await super().batch_get(request)


async def test_a_callers_batch_in_flight_holds_up_only_that_callers_reads(
    bots: Bots, connect_as: ConnectAs
) -> None:
    """One batch in flight per caller: the caller's next reads gather, others' go at once."""
    robot = connect_as("robot")
    me = await robot.whoami()
    component = await robot.create_component(f"Held-{secrets.token_hex(3)}")
    ids = [(await robot.create_issue(f"held {n}", component.id)).id for n in range(6)]
    other_me = await connect_as("boss").whoami()
    assert me.user is not None
    assert other_me.user is not None
    slow = v1.Caller(user_id=me.user.user_id, groups=list(me.groups))
    other = v1.Caller(user_id=other_me.user.user_id, groups=list(other_me.groups))
    channel = bots.stack.model.channel()
    auth_channel = bots.stack.auth.channel()
    try:
        model = _HeldModel(bots.stack.acting_model(v1.ModelStub(channel)), me.user.user_id)
        users = UserDirectory(v1.AuthenticatorStub(auth_channel), timeout_seconds=30)
        reader = IssueReader(model.batch_get, users)
        first = asyncio.ensure_future(reader.get(slow, ids[0]))
        await model.called.wait()  # the first batch is sent on the next loop turn
        later = asyncio.gather(*(reader.get(slow, i) for i in ids[1:]))
        # The other caller is not held up by the slow caller's batch in flight.
        seen = await asyncio.wait_for(reader.get(other, ids[0]), timeout=60)
        assert seen.id == ids[0]
        assert model.callers == [slow.user_id, other.user_id]
        assert not first.done()
        assert not later.done()
        model.release.set()
        read = [await first, *await later]
        assert [i.id for i in read] == ids
        # The slow caller's later reads waited for its free slot and went as one batch.
        assert model.callers == [slow.user_id, other.user_id, slow.user_id]
        assert model.sizes == [1, 1, 5]
        await reader.close()
    finally:
        channel.close()
        auth_channel.close()


class _HeldNames:
    """The real Authenticator, whose GetUsers calls wait while ``release`` is clear."""

    def __init__(self, stub: v1.AuthenticatorStub) -> None:
        self.stub = stub
        self.asked = asyncio.Event()
        self.release = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stub, name)

    async def get_users(self, request: v1.GetUsersRequest, **kwargs: Any) -> v1.UsersResponse:
        self.asked.set()
        await self.release.wait()
        return await self.stub.get_users(request, **kwargs)


async def test_reads_the_user_cache_can_name_do_not_wait_for_the_authenticator(
    bots: Bots, connect_as: ConnectAs
) -> None:
    """In a batch, only the read whose issue names someone uncached waits for GetUsers."""
    robot, _boss = await signed_in(connect_as, "robot", "boss")
    me = await robot.whoami()
    assert me.user is not None
    component = await robot.create_component(f"Named-{secrets.token_hex(3)}")
    known = await robot.create_issue("names only the robot", component.id)
    other = await robot.create_issue("names the boss too", component.id, assignee="boss")
    caller = v1.Caller(user_id=me.user.user_id, groups=list(me.groups))
    channel = bots.stack.model.channel()
    auth_channel = bots.stack.auth.channel()
    try:
        model = _CountingModel(bots.stack.acting_model(v1.ModelStub(channel)))
        names = _HeldNames(v1.AuthenticatorStub(auth_channel))
        users = UserDirectory(
            cast("v1.AuthenticatorStub", names), timeout_seconds=30, cache_seconds=600
        )
        names.release.set()
        assert await users.usernames_by_id([me.user.user_id]) == {me.user.user_id: "robot"}
        names.release.clear()
        names.asked.clear()
        reader = IssueReader(model.batch_get, users)
        first = asyncio.ensure_future(reader.get(caller, known.id))
        second = asyncio.ensure_future(reader.get(caller, other.id))
        await asyncio.wait_for(names.asked.wait(), timeout=60)  # the boss is asked for
        seen = await asyncio.wait_for(first, timeout=60)
        assert (seen.id, seen.reporter, seen.assignee) == (known.id, "robot", "")
        assert not second.done()
        names.release.set()
        named = await second
        assert (named.id, named.reporter, named.assignee) == (other.id, "robot", "boss")
        assert model.sizes == [2]
        # The same answers as a reader whose user cache knew everyone.
        again = IssueReader(model.batch_get, users)
        both = await asyncio.gather(again.get(caller, known.id), again.get(caller, other.id))
        assert [i.SerializeToString() for i in both] == [
            seen.SerializeToString(),
            named.SerializeToString(),
        ]
        await reader.close()
        await again.close()
    finally:
        channel.close()
        auth_channel.close()


async def test_a_failed_batch_fails_each_of_its_reads(bots: Bots) -> None:
    """A Model that cannot be reached: every waiting read gets UNAVAILABLE."""
    dead = ServiceAddress(host="127.0.0.1", port=1)
    channel, auth_channel = dead.channel(), bots.stack.auth.channel()
    try:
        stub = v1.ModelStub(channel)

        async def batch_get(request: v1.BatchGetIssuesRequest) -> Any:
            return await BATCH_GET_ISSUES.fetch(stub, request, deadline_seconds=5)

        users = UserDirectory(v1.AuthenticatorStub(auth_channel), timeout_seconds=5)
        reader = IssueReader(batch_get, users)
        caller = v1.Caller(user_id="u_someone")
        results = await asyncio.gather(
            *(reader.get(caller, i) for i in (1, 2, 3)), return_exceptions=True
        )
        assert [type(r) for r in results] == [Unavailable] * 3
    finally:
        channel.close()
        auth_channel.close()


def test_reader_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        IssueReader(None, None, max_batch=0)  # type: ignore[arg-type]  # refused before the stubs are used
    with pytest.raises(ValueError, match="max_in_flight"):
        IssueReader(None, None, max_in_flight=0)  # type: ignore[arg-type]  # refused before the stubs are used
