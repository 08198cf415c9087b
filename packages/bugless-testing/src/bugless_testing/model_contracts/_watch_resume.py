"""Contract: resuming a Watch from a feed position (capabilities ``watch`` and ``change_feed``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from grpclib.const import Status

from bugless_core.errors import from_grpc_error
from bugless_core.model.backend import Capability
from bugless_core.search.build import all_of, negate
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask
from bugless_testing.events import EventStream
from bugless_testing.model_contracts._custom_fields import T, custom_term, define, values
from bugless_testing.model_contracts._support import (
    ADMIN,
    ALICE,
    BOB,
    change,
    delta,
    eq,
    expect_error,
    make_component,
    make_issue,
    user_entry,
    within,
)
from bugless_testing.plugin import requires_capability

#: Changes made while a resumed watcher was away, in the seam test.
AWAY = 12
#: Changes committed while that watcher is replaying them.
DURING_REPLAY = 6


async def _head(model: v1.ModelStub) -> int:
    answer = await model.read_feed(v1.ReadFeedRequest(caller=ADMIN, head_only=True))
    return answer.head_position


@contextlib.asynccontextmanager
async def _resumed(
    model: v1.ModelStub, request: v1.WatchRequest
) -> AsyncIterator[tuple[EventStream, v1.WatchEvent]]:
    """A running watch and its subscribed marker (checked to carry no change)."""
    stream = EventStream(model.watch(request, timeout=60))
    try:
        marker = await stream.next()
        assert marker.subscribed, f"the first event is not the subscribed marker: {marker}"
        assert marker.issue is None
        assert marker.entry is None
        yield stream, marker
    finally:
        await stream.close()


def _seen(event: v1.WatchEvent) -> tuple[int, int]:
    assert event.issue is not None
    assert event.entry is not None
    return event.issue.id, event.entry.version


@requires_capability(Capability.WATCH, Capability.CHANGE_FEED)
class WatchResumeContract:
    """Watch with ``after_position``: no change missed or repeated across a reconnect.

    Pins down: every event carries the feed position of its change (the
    marker the head it subscribed at, as ReadFeed reports it); a watch
    resumed after a position first delivers, in commit order, the matching
    changes after it (issue and query watches alike, never an issue the
    caller may not view), then live ones, and a change committed while the
    replay is being sent arrives once, after it; a replayed event carries
    the issue as it is now and its change as it was; a change that made an
    issue leave a query is replayed as the ``left_query`` event the live
    stream sent, at its position; positions beyond the
    head or negative are refused with the reason. (Positions older than the
    retention need a pruned feed: each backend's own tests prune theirs.)
    """

    async def test_events_carry_the_positions_readfeed_reports(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        request = v1.WatchRequest(caller=BOB, issue_id=issue.id)
        async with _resumed(model, request) as (stream, marker):
            assert marker.position == await _head(model)
            made = await change(model, issue, comment="positioned")
            event = await stream.next()
        answer = await model.read_feed(
            v1.ReadFeedRequest(caller=ADMIN, after_position=marker.position)
        )
        written = [
            c.position
            for c in answer.changes
            if any(e.issue_id == issue.id and e.version == made.issue.version for e in c.entries)
        ]
        assert written == [event.position]
        assert event.position > marker.position

    async def test_a_resumed_issue_watch_replays_what_it_missed_then_goes_live(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        other = await make_issue(model, comp.id)
        request = v1.WatchRequest(caller=BOB, issue_id=issue.id)
        async with _resumed(model, request) as (stream, _):
            first = await change(model, issue, comment="seen live")
            handled = await stream.next()
        assert handled.entry == first.entry
        # The watcher is away: two changes of its issue, one of another.
        second = await change(model, first.issue, comment="missed one")
        await change(model, other, comment="not watched")
        third = await change(model, second.issue, delta(priority=v1.Priority.P1))
        request.after_position = handled.position
        async with _resumed(model, request) as (stream, marker):
            replay = [await stream.next(), await stream.next()]
            fourth = await change(model, third.issue, comment="live again")
            live = await stream.next()
            await stream.nothing_more()
        assert [e.entry for e in replay] == [second.entry, third.entry]
        assert all(handled.position < e.position <= marker.position for e in replay)
        assert replay[0].position < replay[1].position
        assert live.entry == fourth.entry
        assert live.position > marker.position

    async def test_a_replayed_event_carries_the_issue_now_and_the_change_as_it_was(
        self, model: v1.ModelStub
    ) -> None:
        """WatchEvent.issue is the issue when the event is sent; the entry is the change.

        Two changes of one issue made while the watcher was away: both replayed
        events carry the issue as it is after the second (its title, priority
        and version), while each entry holds its own change with the old and
        new values, so ``issue.version > entry.version`` tells the first one's
        issue moved on since, and its entry alone says what it did.
        """
        comp = await make_component(model)
        issue = await make_issue(model, comp.id, title="as filed")
        start = await _head(model)
        raised = await change(model, issue, delta(priority=v1.Priority.P1))
        renamed = await change(model, raised.issue, delta(title="as it is now"))
        request = v1.WatchRequest(caller=BOB, issue_id=issue.id, after_position=start)
        async with _resumed(model, request) as (stream, _):
            replay = [await stream.next(), await stream.next()]
            await stream.nothing_more()
        assert [e.entry for e in replay] == [raised.entry, renamed.entry]
        for event in replay:
            assert event.issue is not None
            assert event.issue.version == renamed.issue.version
            assert event.issue.title == "as it is now"
            assert event.issue.priority == v1.Priority.P1
        first = replay[0]
        assert first.issue is not None
        assert first.entry is not None
        assert first.issue.version > first.entry.version
        (priority,) = [c for c in first.entry.changes if c.field == "priority"]
        assert (priority.old_value, priority.new_value) == ("P2", "P1")
        assert not [c for c in first.entry.changes if c.field == "title"]
        last = replay[1]
        assert last.issue is not None
        assert last.entry is not None
        assert last.issue.version == last.entry.version

    async def test_a_resumed_query_watch_replays_matching_changes_only(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        hit = await make_issue(model, comp.id)
        miss = await make_issue(model, comp.id)
        start = await _head(model)
        raised = await change(model, hit, delta(priority=v1.Priority.P0))
        await change(model, miss, comment="still P2")
        created = await make_issue(model, comp.id, priority=v1.Priority.P0)
        query = v1.StructuredQuery(filter=within(comp.id, eq(v1.SearchField.PRIORITY, 0)))
        request = v1.WatchRequest(caller=BOB, query=query, after_position=start)
        async with _resumed(model, request) as (stream, _):
            events = [await stream.next(), await stream.next()]
            await stream.nothing_more()
        assert [_seen(e) for e in events] == [(hit.id, raised.issue.version), (created.id, 1)]

    async def test_a_resumed_query_watch_replays_each_leave_as_the_live_stream_sent_it(
        self, model: v1.ModelStub
    ) -> None:
        """Left and matching events alike: same changes, same positions, same left_query.

        Issue A leaves ``is:open assignee:alice`` twice (closed, handed to
        Bob) and comes back twice, ending matching; issue B leaves it by a
        move out of Bob's view. A watcher resuming before all of it, or
        after the first leave, hears what the live watcher heard from there.
        """
        root = await make_component(model)
        secret = await make_component(
            model, parent_id=root.id, acl=[user_entry("alice", v1.Role.ADMIN)]
        )
        a = await make_issue(model, root.id, assignee="alice")
        b = await make_issue(model, root.id, assignee="alice")
        node = all_of(eq(v1.SearchField.STATUS_CLASS, "open"), eq(v1.SearchField.ASSIGNEE, "alice"))
        request = v1.WatchRequest(
            caller=BOB, query=v1.StructuredQuery(filter=within(root.id, node))
        )
        steps = [
            (a, delta(status=v1.Status.FIXED)),
            (a, delta(status=v1.Status.ASSIGNED)),
            (a, delta(assignee="bob")),
            (b, delta(component_id=secret.id)),
            (a, delta(assignee="alice")),
        ]
        async with _resumed(model, request) as (stream, marker):
            start = marker.position
            current = {a.id: a, b.id: b}
            live = []
            for issue, the_delta in steps:
                made = await change(model, current[issue.id], the_delta)
                current[issue.id] = made.issue
                live.append(await stream.next())  # one at a time: each judged as it was made
            await stream.nothing_more()

        def summary(events: list[v1.WatchEvent]) -> list[tuple[int, int, int, bool]]:
            return [
                (
                    e.issue.id if e.issue else 0,
                    e.entry.version if e.entry else 0,
                    e.position,
                    e.left_query,
                )
                for e in events
            ]

        assert [e.left_query for e in live] == [True, False, True, True, False]
        assert live[3].issue == v1.Issue(id=b.id)
        for after, expected in ((start, live), (live[0].position, live[1:])):
            request.after_position = after
            async with _resumed(model, request) as (stream, _):
                replay = [await stream.next() for _ in expected]
                await stream.nothing_more()
            assert summary(replay) == summary(expected)
            assert replay[-1].issue == current[a.id]

    async def test_a_replay_judges_custom_values_as_they_were_at_each_change(
        self, model: v1.ModelStub
    ) -> None:
        """``"Found In":4.2`` matched, left, matched again: replayed as the live stream sent it.

        The issue ends holding 4.2, so a replay judging the values as they
        are now would find it matching before and after the change to 4.3
        and send that as an ordinary event, not a leave.
        """
        comp = await make_component(model)
        found_in = await define(model, comp.id, T.ENUM, options=("4.2", "4.3"))
        issue = await make_issue(model, comp.id)
        query = v1.StructuredQuery(
            filter=within(comp.id, custom_term(found_in, v1.SearchOperator.EQ, "4.2"))
        )
        request = v1.WatchRequest(caller=BOB, query=query)
        async with _resumed(model, request) as (stream, marker):
            live = []
            for option in ("4.2", "4.3", "4.2"):
                the_delta = v1.IssueDelta(custom_fields_set=[values(found_in.id, option)])
                issue = (await change(model, issue, the_delta)).issue
                live.append(await stream.next())
            await stream.nothing_more()
        request.after_position = marker.position
        async with _resumed(model, request) as (stream, _):
            replay = [await stream.next() for _ in live]
            await stream.nothing_more()
        assert [e.left_query for e in live] == [False, True, False]
        assert [(e.position, e.left_query) for e in replay] == [
            (e.position, e.left_query) for e in live
        ]

    async def test_a_replay_reads_an_option_renamed_since_as_it_is_spelled_now(
        self, model: v1.ModelStub
    ) -> None:
        """History keeps an option's old spelling; the replay still finds the leave.

        "Bug" and then "Feature" set, after which the option "Bug" is renamed
        "bug" (the issues' values are respelled, their history is not): the
        change from it still left ``<field>:bug`` when replayed.
        """
        comp = await make_component(model)
        kind = await define(model, comp.id, T.ENUM, options=("Bug", "Feature"))
        issue = await make_issue(model, comp.id)
        start = await _head(model)
        for option in ("Bug", "Feature"):
            the_delta = v1.IssueDelta(custom_fields_set=[values(kind.id, option)])
            issue = (await change(model, issue, the_delta)).issue
        await model.update_custom_field(
            v1.UpdateCustomFieldRequest(
                caller=ADMIN,
                custom_field=v1.CustomField(id=kind.id, options=["bug", "Feature"]),
                update_mask=FieldMask(paths=["options"]),
                expected_version=kind.version,
            )
        )
        query = v1.StructuredQuery(
            filter=within(comp.id, custom_term(kind, v1.SearchOperator.EQ, "bug"))
        )
        request = v1.WatchRequest(caller=BOB, query=query, after_position=start)
        async with _resumed(model, request) as (stream, _):
            event = await stream.next()
            await stream.nothing_more()
        assert event.left_query
        assert event.entry is not None
        assert event.entry.version == issue.version

    async def test_the_replay_never_reports_invisible_issues(self, model: v1.ModelStub) -> None:
        root = await make_component(model)
        secret_comp = await make_component(
            model, parent_id=root.id, acl=[user_entry("alice", v1.Role.ADMIN)]
        )
        secret = await make_issue(model, secret_comp.id, caller=ALICE)
        public = await make_issue(model, root.id)
        start = await _head(model)
        await change(model, secret, comment="hush", caller=ALICE)
        said = await change(model, public, comment="hello")
        query = v1.StructuredQuery(filter=within(root.id))
        request = v1.WatchRequest(caller=BOB, query=query, after_position=start)
        async with _resumed(model, request) as (stream, _):
            event = await stream.next()
            await stream.nothing_more()
        assert _seen(event) == (public.id, said.issue.version)
        # Alice may view both: the same replay tells her of the secret change.
        request.caller = ALICE
        async with _resumed(model, request) as (stream, _):
            events = [await stream.next(), await stream.next()]
        assert [e.issue.id for e in events if e.issue] == [secret.id, public.id]

    async def test_a_replay_is_not_swayed_by_words_written_where_the_watcher_cannot_see(
        self, model: v1.ModelStub
    ) -> None:
        """Whether a move out of view left the query tells nothing written after it.

        Bob watches ``-bluebird``; the issue is moved where only Alice sees
        it (live: a leave), and Alice then comments "bluebird" there. Were
        the state before the move judged with the comments as they are now,
        it would match neither before nor after, and a replay would send
        nothing: a watcher replaying with word after word would learn the
        words of a comment it may not read, and keep a row of an issue it
        lost. The replay says the move left the query, as the live stream
        did, whatever was written since.
        """
        root = await make_component(model)
        secret = await make_component(
            model, parent_id=root.id, acl=[user_entry("alice", v1.Role.ADMIN)]
        )
        issue = await make_issue(model, root.id)
        word = eq(v1.SearchField.TEXT, "bluebird")
        request = v1.WatchRequest(
            caller=BOB, query=v1.StructuredQuery(filter=within(root.id, negate(word)))
        )
        async with _resumed(model, request) as (stream, marker):
            moved = await change(model, issue, delta(component_id=secret.id))
            live = await stream.next()
        await change(model, moved.issue, comment="its code name is bluebird", caller=ALICE)
        request.after_position = marker.position
        async with _resumed(model, request) as (stream, _):
            replay = await stream.next()
            await stream.nothing_more()
        assert (live.left_query, live.issue) == (True, v1.Issue(id=issue.id))
        assert (replay.position, replay.left_query, replay.issue, replay.entry) == (
            live.position,
            True,
            v1.Issue(id=issue.id),
            live.entry,
        )

    async def test_changes_committed_during_the_replay_arrive_once_after_it(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        start = await _head(model)
        for n in range(AWAY):
            issue = (await change(model, issue, comment=f"away {n}")).issue
        request = v1.WatchRequest(caller=BOB, issue_id=issue.id, after_position=start)
        async with _resumed(model, request) as (stream, marker):
            # The replay is being read and sent while these commit.
            for n in range(DURING_REPLAY):
                issue = (await change(model, issue, comment=f"during {n}")).issue
            events = [await stream.next() for _ in range(AWAY + DURING_REPLAY)]
            await stream.nothing_more()
        versions = [_seen(e)[1] for e in events]
        assert versions == list(range(2, 2 + AWAY + DURING_REPLAY)), "missed, repeated or unordered"
        positions = [e.position for e in events]
        assert positions == sorted(positions)
        assert len(set(positions)) == len(positions)
        assert all(p <= marker.position for p in positions[:AWAY])
        assert all(p > marker.position for p in positions[AWAY:])

    async def test_resuming_at_the_head_is_a_fresh_watch(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        head = await _head(model)
        request = v1.WatchRequest(caller=BOB, issue_id=issue.id, after_position=head)
        async with _resumed(model, request) as (stream, marker):
            assert marker.position >= head
            await stream.nothing_more(0.2)
            made = await change(model, issue, comment="next")
            event = await stream.next()
        assert event.entry == made.entry

    async def test_bad_resume_positions_are_refused(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        head = await _head(model)

        async def first_event(after: int) -> None:
            request = v1.WatchRequest(caller=BOB, issue_id=issue.id, after_position=after)
            async for event in model.watch(request, timeout=10):
                raise AssertionError(f"a bad position was accepted: {event}")

        error = await expect_error(
            first_event(head + 1000), Status.INVALID_ARGUMENT, "after_position", "head"
        )
        refusal = from_grpc_error(error)
        assert refusal.metadata["head_position"] == str(head)
        assert "oldest_position" in refusal.metadata
        await expect_error(first_event(-1), Status.INVALID_ARGUMENT, "after_position")
