"""Batched CreateIssue: concurrent creates share Model calls and answer as single creates do.

Everything is real: the stack's Model on PostgreSQL and its Authenticator,
API frontends over mutual TLS. :class:`IssueCreator` is also driven directly
against the real Model, through a wrapper that only counts the calls.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import pytest
from api_support import UPB_REFUSES, Bots, ConnectAs, acl, extra_api, signed_in

from bugless_api._coalesce_create import IssueCreator
from bugless_api._users import UserDirectory, UserRefs
from bugless_api._wire_issues import BATCH_CREATE_ISSUES
from bugless_api.server import RunningApi
from bugless_core.clients import ServiceAddress, call
from bugless_core.errors import BuglessError, Unavailable
from bugless_proto import v1, wire


@pytest.fixture(scope="module")
async def unbatched_api(bots: Bots) -> AsyncIterator[RunningApi]:
    """A second frontend with batching off: the reference answers."""
    async with extra_api(bots, batch_creates=False) as running:
        yield running


async def _outcome(coro: Awaitable[v1.Issue]) -> tuple[object, ...]:
    """What a client can observe, ids and times aside: the issue's fields, or the error."""
    try:
        issue = await coro
    except BuglessError as exc:
        return (type(exc).__name__, exc.message, dict(exc.metadata))
    # The rest of the issue too: the batched reply is the Model's wire form
    # with usernames put in, the unbatched one a betterproto2 round trip.
    issue.id, issue.created_at, issue.modified_at = 0, None, None
    return (
        issue.title,
        issue.reporter,
        issue.assignee,
        issue.cc,
        issue.status,
        issue.version,
        issue,
    )


async def test_concurrent_creates_answer_exactly_as_unbatched_creates(
    connect_as: ConnectAs, unbatched_api: RunningApi
) -> None:
    """Valid, invalid, hidden and unknown components, and unknown people, fired at once."""
    boss, robot = connect_as("boss"), connect_as("robot")
    await robot.whoami()
    await boss.whoami()
    secret = await boss.create_component(
        f"Hidden-{secrets.token_hex(3)}", acl=[acl(v1.Principal(user="boss"), v1.Role.ADMIN)]
    )
    viewable = await boss.create_component(
        f"Viewable-{secrets.token_hex(3)}",
        acl=[
            acl(v1.Principal(user="boss"), v1.Role.ADMIN),
            acl(v1.Principal(user="robot"), v1.Role.VIEWER),
        ],
    )
    mine = await robot.create_component(f"Mine-{secrets.token_hex(3)}")

    def creates(client: object) -> list[Awaitable[v1.Issue]]:
        create = client.create_issue  # type: ignore[attr-defined]
        return [
            *(create(f"batched {n}", mine.id, assignee="boss", cc=["robot"]) for n in range(8)),
            create("in a hidden component", secret.id),
            create("in a component robot views", viewable.id),
            create("in no component", 987_654_321),
            create("   ", mine.id),
            create("to nobody", mine.id, assignee="no-such-person"),
        ]

    batched = await asyncio.gather(*(_outcome(c) for c in creates(robot)))
    reference_client = connect_as("robot", port=unbatched_api.port)
    reference = await asyncio.gather(*(_outcome(c) for c in creates(reference_client)))

    assert batched == reference
    assert batched[0][:6] == ("batched 0", "robot", "boss", ["robot"], v1.Status.ASSIGNED, 1)
    assert [type(o) for o in batched[8:]] == [tuple] * 5
    names = [o[0] for o in batched[8:] if isinstance(o, tuple)]
    assert names == [
        "NotFound",
        "PermissionDenied",
        "NotFound",
        "InvalidArgument",
        "InvalidArgument",
    ]


async def test_a_repeated_idempotency_key_in_one_batch_makes_one_issue(
    connect_as: ConnectAs,
) -> None:
    robot = connect_as("robot")
    component = await robot.create_component(f"Keyed-{secrets.token_hex(3)}")
    key = secrets.token_hex(8)
    made = await asyncio.gather(
        *(robot.create_issue("once", component.id, idempotency_key=key) for _ in range(6))
    )
    assert len({i.id for i in made}) == 1
    found = await robot.search_issues(f"componentid:{component.id}")
    assert [i.title for i in found.issues] == ["once"]


class _CountingModel:
    """The real Model's BatchCreateIssues, counting calls and their sizes.

    ``refused``: its replies carry :data:`UPB_REFUSES`, so upb refuses them.
    The Model's bytes are kept in ``replies``.
    """

    def __init__(self, stub: v1.ModelStub, *, refused: bool = False) -> None:
        self.stub = stub
        self.sizes: list[int] = []
        self.replies: list[bytes] = []
        self.suffix = UPB_REFUSES if refused else b""

    async def batch_create(self, request: v1.BatchCreateIssuesRequest) -> Any:
        self.sizes.append(len(request.items))
        # The stack's acting stub asserts the request's caller; the reply is then
        # handed over as the gateway's call hands it over (its codec's ``FromString``).
        reply = await call(self.stub.batch_create_issues, request, timeout=30)
        self.replies.append(wire.encode(reply))
        return BATCH_CREATE_ISSUES.parse(self.replies[-1] + self.suffix)


async def test_creates_of_one_caller_share_model_calls(bots: Bots, connect_as: ConnectAs) -> None:
    robot = connect_as("robot")
    me = await robot.whoami()
    assert me.user is not None
    component = await robot.create_component(f"Shared-{secrets.token_hex(3)}")
    channel = bots.stack.model.channel()
    auth_channel = bots.stack.auth.channel()
    try:
        model = _CountingModel(bots.stack.acting_model(v1.ModelStub(channel)))
        users = UserDirectory(v1.AuthenticatorStub(auth_channel), timeout_seconds=30)
        creator = IssueCreator(model.batch_create, users, max_batch=16, max_in_flight=1)
        caller = v1.Caller(user_id=me.user.user_id, groups=list(me.groups))
        encoded = await asyncio.gather(
            *(
                creator.create(
                    caller,
                    v1.CreateIssueRequest(
                        fields=v1.IssueFields(title=f"shared {n}", component_id=component.id)
                    ),
                )
                for n in range(40)
            )
        )
        assert all(isinstance(issue, wire.Encoded) for issue in encoded)
        made = list(encoded)
        assert [i.title for i in made] == [f"shared {n}" for n in range(40)]
        assert {i.reporter for i in made} == {"robot"}
        assert len({i.id for i in made}) == 40
        # 40 creates, at most 16 a call, one call at a time.
        assert sum(model.sizes) == 40
        assert max(model.sizes) <= 16
        assert len(model.sizes) <= 4
        await creator.close()
    finally:
        channel.close()
        auth_channel.close()


async def test_a_batch_upb_refuses_is_read_by_betterproto2_and_answered_alike(
    bots: Bots, connect_as: ConnectAs
) -> None:
    """Each create gets its issue as the old path named it, or its item's error."""
    robot, boss = await signed_in(connect_as, "robot", "boss")
    me, boss_me = await robot.whoami(), await boss.whoami()
    assert me.user is not None
    assert boss_me.user is not None
    caller = v1.Caller(user_id=me.user.user_id, groups=list(me.groups))
    component = await robot.create_component(
        f"Refused-{secrets.token_hex(3)}", acl=[acl(v1.Principal(user="robot"), v1.Role.ADMIN)]
    )
    owner = await robot.create_custom_field(component.id, "Owner", v1.CustomFieldType.USER)
    items = [
        v1.CreateIssueRequest(
            fields=v1.IssueFields(
                title=f"refused {n}", component_id=component.id, assignee=boss_me.user.user_id
            ),
            cc=[me.user.user_id],
            custom_fields=[v1.CustomFieldValue(field_id=owner.id, values=[boss_me.user.user_id])],
        )
        for n in range(3)
    ] + [v1.CreateIssueRequest(fields=v1.IssueFields(title="lost", component_id=987_654_321))]
    channel = bots.stack.model.channel()
    auth_channel = bots.stack.auth.channel()
    try:
        model = _CountingModel(bots.stack.acting_model(v1.ModelStub(channel)), refused=True)
        users = UserDirectory(v1.AuthenticatorStub(auth_channel), timeout_seconds=30)
        creator = IssueCreator(model.batch_create, users)
        made = await asyncio.gather(
            *(creator.create(caller, item) for item in items), return_exceptions=True
        )
        await creator.close()
        assert model.sizes == [len(items)]
        # The old path on the Model's bytes: betterproto2, UserRefs, to_usernames.
        old = wire.decode(v1.BatchCreateIssuesResponse, model.replies[0])
        refs = UserRefs()
        for result in old.results:
            refs.issue(result.issue)
        await users.to_usernames(refs)
    finally:
        channel.close()
        auth_channel.close()
    created = [i for i in made[:3] if isinstance(i, v1.Issue) and not isinstance(i, wire.Encoded)]
    expected = [wire.encode(r.issue) for r in old.results[:3] if r.issue is not None]
    assert [wire.encode(i) for i in created] == expected
    assert len(created) == 3
    first = created[0]
    custom = [list(v.values) for v in first.custom_fields]
    assert (first.reporter, first.assignee, first.cc, custom) == (
        "robot",
        "boss",
        ["robot"],
        [["boss"]],
    )
    lost = made[3]
    assert isinstance(lost, BuglessError)
    assert (type(lost).__name__, lost.message) == ("NotFound", old.results[3].message)


async def test_a_failed_batch_fails_each_of_its_creates(bots: Bots) -> None:
    """A Model that cannot be reached: every waiting create gets UNAVAILABLE."""
    dead = ServiceAddress(host="127.0.0.1", port=1)
    channel, auth_channel = dead.channel(), bots.stack.auth.channel()
    try:
        stub = v1.ModelStub(channel)

        async def batch_create(request: v1.BatchCreateIssuesRequest) -> Any:
            return await BATCH_CREATE_ISSUES.fetch(stub, request, deadline_seconds=5)

        users = UserDirectory(v1.AuthenticatorStub(auth_channel), timeout_seconds=5)
        creator = IssueCreator(batch_create, users)
        caller = v1.Caller(user_id="u_someone")
        item = v1.CreateIssueRequest(fields=v1.IssueFields(title="t", component_id=1))
        results = await asyncio.gather(
            *(creator.create(caller, item) for _ in range(3)), return_exceptions=True
        )
        assert [type(r) for r in results] == [Unavailable] * 3
    finally:
        channel.close()
        auth_channel.close()


def test_creator_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        IssueCreator(None, None, max_batch=0)  # type: ignore[arg-type]  # refused before the stubs are used
    with pytest.raises(ValueError, match="max_in_flight"):
        IssueCreator(None, None, max_in_flight=0)  # type: ignore[arg-type]  # refused before the stubs are used
