"""Watch through the API: a bot follows a query or an issue as others change it.

Events cross two hops (API frontend, then the Model's LISTEN/NOTIFY feed), and
must come out with usernames, only for matching issues the watcher may view.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from api_support import ConnectAs, acl, signed_in

from bugless_api.client import BuglessClient
from bugless_api.server import RunningApi
from bugless_core.errors import FailedPrecondition, InvalidArgument, NotFound
from bugless_proto import v1
from bugless_testing.events import DELIVERY_TIMEOUT, EventStream


@contextlib.asynccontextmanager
async def _watching(
    client: BuglessClient, *, query: str | None = None, issue_id: int | None = None
) -> AsyncIterator[EventStream]:
    events = EventStream(client.watch(query=query, issue_id=issue_id))
    try:
        # The Model's marker, passed through by the API (and checked to name
        # no issue): changes made from here on must all arrive.
        await events.subscribed()
        yield events
    finally:
        await events.close()


async def _first_event(events: AsyncIterator[v1.WatchEvent]) -> v1.WatchEvent | None:
    """The first event of a stream expected to fail before delivering any."""
    async with asyncio.timeout(DELIVERY_TIMEOUT):
        async for event in events:
            return event
    return None


async def _component(client: BuglessClient) -> v1.Component:
    return await client.create_component(f"Watched-{secrets.token_hex(3)}")


def _change(entry: v1.HistoryEntry | None, field: str) -> v1.FieldChange:
    assert entry is not None
    return next(c for c in entry.changes if c.field == field)


async def test_a_query_watch_delivers_matching_changes_with_usernames(
    connect_as: ConnectAs,
) -> None:
    """A change that makes an issue match arrives, people as usernames; others do not."""
    robot, boss, _ = await signed_in(connect_as, "robot", "boss", "viewer")
    component = await robot.create_component(f"Watch-{secrets.token_hex(3)}")
    hit = await robot.create_issue("will be urgent", component.id, assignee="robot")
    miss = await robot.create_issue("stays P2", component.id)

    async with _watching(robot, query=f"c:{component.id} p<p2") as events:
        await boss.comment(miss.id, "still not urgent")
        changed = await boss.update_issue(
            hit.id, priority="P0", assignee="boss", cc_add=["viewer"], comment="now urgent"
        )
        event = await events.next()
        await events.nothing_more()

    assert event.issue is not None
    assert event.issue.id == hit.id, "the non-matching change of the other issue came first"
    assert (event.issue.reporter, event.issue.assignee, event.issue.cc) == (
        "robot",
        "boss",
        ["viewer"],
    )
    assert event.issue.priority is v1.Priority.P0
    assert event.entry is not None
    assert changed.issue is not None
    assert event.entry.version == changed.issue.version
    assert event.entry.author == "boss"
    assert event.entry.comment == "now urgent"
    assignee = _change(event.entry, "assignee")
    assert (assignee.old_value, assignee.new_value) == ("robot", "boss")
    assert _change(event.entry, "cc").added == ["viewer"]


async def test_me_in_a_watched_query_is_the_watcher(connect_as: ConnectAs) -> None:
    """``assignee:me`` names the watching bot, not whoever makes the change."""
    robot, boss = await signed_in(connect_as, "robot", "boss")
    component = await robot.create_component(f"WatchMe-{secrets.token_hex(3)}")
    for_robot = await boss.create_issue("robot's", component.id, assignee="robot")
    for_boss = await boss.create_issue("boss's", component.id, assignee="boss")

    async with _watching(robot, query=f"c:{component.id} assignee:me") as events:
        await boss.comment(for_boss.id, "not robot's business")
        await boss.comment(for_robot.id, "robot, look")
        event = await events.next()
        await events.nothing_more()

    assert event.issue is not None
    assert (event.issue.id, event.issue.assignee) == (for_robot.id, "robot")
    assert event.entry is not None
    assert (event.entry.author, event.entry.comment) == ("boss", "robot, look")


async def test_an_issue_watch_delivers_each_entry_in_order(connect_as: ConnectAs) -> None:
    """Watching one issue yields every later entry of it, in version order."""
    robot, boss, _ = await signed_in(connect_as, "robot", "boss", "viewer")
    component = await robot.create_component(f"WatchOne-{secrets.token_hex(3)}")
    watched = await robot.create_issue("watched", component.id)
    other = await robot.create_issue("ignored", component.id)

    async with _watching(robot, issue_id=watched.id) as events:
        await boss.comment(other.id, "elsewhere")
        await boss.update_issue(watched.id, verifier="viewer")
        await robot.comment(watched.id, "second")
        first, second = await events.next(), await events.next()
        await events.nothing_more()

    assert [(e.entry.version, e.entry.author) for e in (first, second) if e.entry] == [
        (watched.version + 1, "boss"),
        (watched.version + 2, "robot"),
    ]
    verifier = _change(first.entry, "verifier")
    assert (verifier.old_value, verifier.new_value) == ("", "viewer")
    assert second.issue is not None
    assert second.issue.verifier == "viewer"


async def test_a_restricted_issue_reaches_only_watchers_who_may_view_it(
    connect_as: ConnectAs,
) -> None:
    """A query spanning a restricted subcomponent: outsiders never hear of its issues."""
    boss, viewer, outsider = await signed_in(connect_as, "boss", "viewer", "outsider")
    root = await boss.create_component(f"WatchTree-{secrets.token_hex(3)}")
    secret_component = await boss.create_component(
        "Secret",
        parent_id=root.id,
        acl=[
            v1.AclEntry(principal=v1.Principal(user="boss"), role=v1.Role.ADMIN),
            v1.AclEntry(principal=v1.Principal(group="secret-viewers"), role=v1.Role.VIEWER),
        ],
    )
    secret = await boss.create_issue("launch codes", secret_component.id)
    public = await boss.create_issue("lunch menu", root.id)
    query = f"c:{root.id}+"

    async with (
        _watching(outsider, query=query) as outsider_events,
        _watching(viewer, query=query) as viewer_events,
    ):
        await boss.comment(secret.id, "rotate them")
        await boss.comment(public.id, "pizza")
        seen_by_viewer = [await viewer_events.next(), await viewer_events.next()]
        seen_by_outsider = await outsider_events.next()
        await outsider_events.nothing_more()

    assert [e.issue.id for e in seen_by_viewer if e.issue] == [secret.id, public.id]
    assert seen_by_viewer[0].entry is not None
    assert seen_by_viewer[0].entry.author == "boss"
    assert seen_by_outsider.issue is not None
    assert seen_by_outsider.issue.id == public.id


async def test_an_issue_leaving_a_watched_query_is_an_event_that_says_so(
    connect_as: ConnectAs,
) -> None:
    """Closed: left_query with the issue and change, people as usernames. Moved where the
    watcher may not look: left_query with the ids alone, nothing of the change."""
    boss, robot = await signed_in(connect_as, "boss", "robot")
    root = await boss.create_component(f"WatchLeave-{secrets.token_hex(3)}")
    secret_component = await boss.create_component(
        "Secret", parent_id=root.id, acl=[acl(v1.Principal(user="boss"), v1.Role.ADMIN)]
    )
    closing = await boss.create_issue("to be closed", root.id, assignee="robot")
    moving = await boss.create_issue("to be hidden", root.id, assignee="robot")

    async with _watching(robot, query=f"c:{root.id}+ is:open assignee:me") as events:
        closed = await boss.update_issue(closing.id, status="FIXED", comment="done")
        closed_event = await events.next()
        moved = await boss.update_issue(
            moving.id, component_id=secret_component.id, comment="need to know"
        )
        moved_event = await events.next()
        await events.nothing_more()

    assert closed_event.left_query
    assert closed_event.issue is not None
    assert (closed_event.issue.id, closed_event.issue.status) == (closing.id, v1.Status.FIXED)
    assert closed_event.issue.assignee == "robot"
    assert closed_event.entry is not None
    assert closed.issue is not None
    assert (closed_event.entry.version, closed_event.entry.author) == (closed.issue.version, "boss")
    assert closed_event.entry.comment == "done"
    assert moved_event.left_query
    assert moved.issue is not None
    assert moved_event.issue == v1.Issue(id=moving.id)
    assert moved_event.entry == v1.HistoryEntry(issue_id=moving.id, version=moved.issue.version)


async def test_watching_an_invisible_issue_is_not_found(connect_as: ConnectAs) -> None:
    """The stream fails with NOT_FOUND, as a get would: existence is not leaked."""
    boss, outsider = await signed_in(connect_as, "boss", "outsider")
    component = await boss.create_component(
        f"WatchHidden-{secrets.token_hex(3)}",
        acl=[v1.AclEntry(principal=v1.Principal(user="boss"), role=v1.Role.ADMIN)],
    )
    secret = await boss.create_issue("hidden", component.id)

    with pytest.raises(NotFound, match=f"issue {secret.id} not found"):
        await _first_event(outsider.watch(issue_id=secret.id))


async def test_a_watch_with_a_bad_query_is_invalid_and_positioned(connect_as: ConnectAs) -> None:
    """A query syntax error fails the stream at once, pointing at its column."""
    with pytest.raises(InvalidArgument, match=r"query: .*at column") as caught:
        await _first_event(connect_as("robot").watch(query="is:open status:"))

    assert caught.value.metadata["position"] == "15"


async def test_a_watch_naming_a_hotlist_unseen_is_refused_at_its_place_in_the_query(
    connect_as: ConnectAs,
) -> None:
    """As a search is: INVALID_ARGUMENT before the stream starts, the id marked in the query."""
    boss, robot = await signed_in(connect_as, "boss", "robot")
    hotlist = await boss.create_hotlist(f"Private-{secrets.token_hex(3)}", private=True)
    query = f"is:open h:{hotlist.id}"
    with pytest.raises(
        InvalidArgument, match=r"query: at column 11: there is no hotlist"
    ) as caught:
        await _first_event(robot.watch(query=query))
    assert caught.value.metadata["position"] == str(query.rindex(str(hotlist.id)))
    assert caught.value.metadata["hotlist"] == str(hotlist.id)


async def test_a_watch_whose_hotlist_is_made_private_ends_marked_in_the_query(
    connect_as: ConnectAs,
) -> None:
    """While it runs as when it starts: boss makes the watched hotlist private,
    and at the next change robot's watch ends with the INVALID_ARGUMENT a new
    watch of the query gets, the id marked at its column, not a stream that
    silently matches nothing from then on."""
    boss, robot = await signed_in(connect_as, "boss", "robot")
    hotlist = await boss.create_hotlist(f"Shared-{secrets.token_hex(3)}")
    component = await _component(boss)
    query = f"is:open h:{hotlist.id}"
    events = EventStream(robot.watch(query=query))
    try:
        await events.subscribed()
        hotlist.private = True
        await boss.update_hotlist(hotlist, ["private"])
        await boss.create_issue("a change the watch judges", component.id)
        with pytest.raises(InvalidArgument) as ended:
            await events.next()
    finally:
        await events.close()
    with pytest.raises(InvalidArgument) as refused:
        await _first_event(robot.watch(query=query))
    assert ended.value.message == refused.value.message
    assert ended.value.message.startswith("query: at column 11: there is no hotlist")
    assert ended.value.metadata["position"] == str(query.rindex(str(hotlist.id)))


async def test_a_watch_whose_custom_field_is_deleted_ends_failed_precondition(
    connect_as: ConnectAs,
) -> None:
    """Through the API as from the Model: the field a watched query names is
    deleted, and the bot's watch ends with FailedPrecondition naming it (reason
    WATCHED_FIELD_CHANGED), not the INVALID_ARGUMENT of a query typed wrong,
    nor an internal error; the client does not reconnect on it."""
    (robot,) = await signed_in(connect_as, "robot")
    component = await robot.create_component(
        f"Fields-{secrets.token_hex(3)}", acl=[acl(v1.Principal(user="robot"), v1.Role.ADMIN)]
    )
    name = f"Seen In {secrets.token_hex(2)}"
    field = await robot.create_custom_field(component.id, name, v1.CustomFieldType.TEXT)
    issue = await robot.create_issue(
        "with a value",
        component.id,
        custom_fields=[v1.CustomFieldValue(field_id=field.id, values=["4.2"])],
    )
    events = EventStream(robot.watch(query=f'c:{component.id} "{name}":4.2'))
    try:
        await events.subscribed()
        await robot.comment(issue.id, "before")
        before = await events.next()
        assert before.entry is not None
        assert before.entry.comment == "before"
        await robot.delete_custom_field(field.id)
        await robot.comment(issue.id, "after")
        with pytest.raises(FailedPrecondition) as ended:
            await events.next()
    finally:
        await events.close()
    assert ended.value.reason == "WATCHED_FIELD_CHANGED"
    assert repr(name) in ended.value.message


async def test_a_watch_without_a_target_is_invalid(connect_as: ConnectAs) -> None:
    """Neither an issue nor a query: INVALID_ARGUMENT naming the oneof, not a silent stream."""
    with pytest.raises(InvalidArgument, match="target: give issue_id or query"):
        await _first_event(connect_as("robot").watch())


async def test_hanging_up_a_watch_ends_its_model_stream(
    api: RunningApi, connect_as: ConnectAs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bot that stops watching does not leave the API streaming from the Model."""
    model = api.gateway.model_watches
    real_watch = model.watch
    open_streams: list[v1.WatchRequest] = []
    ended = asyncio.Event()

    def counted_watch(request: v1.WatchRequest, **options: Any) -> AsyncIterator[v1.WatchEvent]:
        async def stream() -> AsyncIterator[v1.WatchEvent]:
            open_streams.append(request)
            try:
                async for event in real_watch(request, **options):
                    yield event
            finally:
                open_streams.remove(request)
                ended.set()

        return stream()

    monkeypatch.setattr(model, "watch", counted_watch)
    (robot,) = await signed_in(connect_as, "robot")
    issue = await robot.create_issue("briefly watched", (await _component(robot)).id)

    async with _watching(robot, issue_id=issue.id) as events:
        await robot.comment(issue.id, "seen")
        assert (await events.next()).issue is not None
        assert [r.issue_id for r in open_streams] == [issue.id]

    await asyncio.wait_for(ended.wait(), DELIVERY_TIMEOUT)
    assert open_streams == []
