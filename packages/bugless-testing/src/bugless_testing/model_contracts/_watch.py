"""Contract: Watch streams (capability ``watch``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

from grpclib.const import Status

from bugless_core.model.backend import Capability
from bugless_core.search.build import all_of, any_of, negate, term
from bugless_proto import v1
from bugless_testing.events import DELIVERY_TIMEOUT, EventStream
from bugless_testing.model_contracts._custom_fields import T, custom_term, define, values
from bugless_testing.model_contracts._support import (
    ALICE,
    BOB,
    UNKNOWN_ID,
    Changed,
    change,
    delta,
    eq,
    expect_error,
    make_component,
    make_hotlist,
    make_issue,
    update_component,
    user_entry,
    within,
)
from bugless_testing.plugin import requires_capability


@contextlib.asynccontextmanager
async def _watching(model: v1.ModelStub, request: v1.WatchRequest) -> AsyncIterator[EventStream]:
    stream = EventStream(model.watch(request, timeout=60))
    try:
        await stream.subscribed()
        yield stream
    finally:
        await stream.close()


async def _hears(stream: EventStream, changed: Changed, *, left: bool) -> v1.WatchEvent:
    """The stream's next event, which must be ``changed``'s entry: a leave when ``left``.

    A query watch's event either carries a change of an issue that matches
    the query after it, or tells that the change made the issue leave it;
    most of these tests pin down which, change by change.
    """
    event = await stream.next()
    assert (event.left_query, event.entry) == (left, changed.entry)
    return event


def _set(*custom: v1.CustomFieldValue) -> v1.IssueDelta:
    """A delta setting custom values (a value without items clears its field)."""
    return v1.IssueDelta(custom_fields_set=list(custom))


def _open_of_alice(root_id: int) -> v1.WatchRequest:
    """Bob watches ``is:open assignee:alice`` in one test's component tree."""
    node = all_of(eq(v1.SearchField.STATUS_CLASS, "open"), eq(v1.SearchField.ASSIGNEE, "alice"))
    return v1.WatchRequest(caller=BOB, query=v1.StructuredQuery(filter=within(root_id, node)))


@requires_capability(Capability.WATCH)
class WatchContract:
    """Watch: committed changes pushed to streams, never invisible ones.

    Pins down: the first event is the ``subscribed`` marker (no issue, no
    entry); an issue watch then receives every entry committed after it, in
    version order, with the issue as it is after the entry; a query watch
    receives entries of issues matching the query after the change (including
    other-side entries and newly created issues), and a ``left_query`` event
    for a change that made an issue stop matching it (closed, reassigned,
    moved out of the caller's view: then with the issue's and the entry's
    ids only), nothing for a change of an issue that matched neither before
    nor after; failed changes produce no event; and a caller is never told
    about an issue they may not view.
    """

    async def test_issue_watch_receives_each_committed_entry_in_order(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        async with _watching(model, v1.WatchRequest(caller=BOB, issue_id=issue.id)) as stream:
            first = await change(model, issue, delta(priority=v1.Priority.P0), comment="one")
            second = await change(model, first.issue, comment="two")
            events = [await stream.next(), await stream.next()]
        assert [e.entry.version for e in events if e.entry] == [2, 3]
        assert events[0].entry == first.entry
        assert events[0].issue is not None
        assert events[0].issue.priority == v1.Priority.P0
        assert events[1].issue == second.issue

    async def test_rejected_change_produces_no_event(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        async with _watching(model, v1.WatchRequest(caller=BOB, issue_id=issue.id)) as stream:
            await change(model, issue, comment="wins")
            await expect_error(change(model, issue, comment="stale"), Status.ABORTED)
            event = await stream.next()
            assert event.entry is not None
            assert event.entry.comment == "wins"
            await stream.nothing_more()

    async def test_issue_watch_receives_other_side_entries(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        watched = await make_issue(model, comp.id)
        other = await make_issue(model, comp.id)
        async with _watching(model, v1.WatchRequest(caller=BOB, issue_id=watched.id)) as stream:
            await change(model, other, delta(blocking_add=[watched.id]))
            event = await stream.next()
        assert event.entry is not None
        assert event.entry.caused_by_issue_id == other.id
        assert event.issue is not None
        assert event.issue.blocked_by_ids == [other.id]

    async def test_query_watch_receives_matching_changes_only(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        hit = await make_issue(model, comp.id)
        miss = await make_issue(model, comp.id)
        query = v1.StructuredQuery(filter=within(comp.id, eq(v1.SearchField.PRIORITY, 0)))
        async with _watching(model, v1.WatchRequest(caller=BOB, query=query)) as stream:
            await change(model, miss, comment="still P2")
            await change(model, hit, delta(priority=v1.Priority.P0))
            event = await stream.next()
            assert event.issue is not None
            assert event.issue.id == hit.id
            created = await make_issue(model, comp.id, priority=v1.Priority.P0)
            event = await stream.next()
            assert event.issue is not None
            assert event.issue.id == created.id
            assert event.entry is not None
            assert event.entry.version == 1
            await stream.nothing_more()

    async def test_query_is_evaluated_on_the_issue_after_the_change(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id, priority=v1.Priority.P0)
        query = v1.StructuredQuery(filter=within(comp.id, eq(v1.SearchField.PRIORITY, 0)))
        async with _watching(model, v1.WatchRequest(caller=BOB, query=query)) as stream:
            left = await change(model, issue, delta(priority=v1.Priority.P3))
            await _hears(stream, left, left=True)
            still = await change(model, left.issue, comment="still P3")
            await stream.nothing_more()
            back = await change(model, still.issue, delta(priority=v1.Priority.P0))
            await _hears(stream, back, left=False)

    async def test_closing_an_issue_tells_the_watcher_it_left_the_query(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id, assignee="alice")
        async with _watching(model, _open_of_alice(comp.id)) as stream:
            closed = await change(model, issue, delta(status=v1.Status.FIXED), comment="done")
            event = await _hears(stream, closed, left=True)
            await stream.nothing_more()
        assert event.issue == closed.issue

    async def test_reassigning_an_issue_tells_the_watcher_it_left_the_query(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id, assignee="alice")
        async with _watching(model, _open_of_alice(comp.id)) as stream:
            handed = await change(model, issue, delta(assignee="bob"))
            event = await _hears(stream, handed, left=True)
            await stream.nothing_more()
        assert event.issue is not None
        assert event.issue.assignee == "bob"

    async def test_retitling_an_issue_tells_a_text_watcher_it_left_the_query(
        self, model: v1.ModelStub
    ) -> None:
        """``title:W`` and a bare word read the title as it was before the change, too."""
        comp = await make_component(model)
        word = f"quux{comp.id}"
        issue = await make_issue(model, comp.id, title=f"{word} at start")
        for field in (v1.SearchField.TITLE, v1.SearchField.TEXT):
            query = v1.StructuredQuery(filter=within(comp.id, eq(field, word)))
            async with _watching(model, v1.WatchRequest(caller=BOB, query=query)) as stream:
                retitled = await change(model, issue, delta(title=f"slow at start {field.name}"))
                await _hears(stream, retitled, left=True)
                await stream.nothing_more()
            # Back to the word: it matches again (an ordinary event, not a leave).
            async with _watching(model, v1.WatchRequest(caller=BOB, query=query)) as stream:
                back = await change(model, retitled.issue, delta(title=f"{word} again"))
                await _hears(stream, back, left=False)
                await stream.nothing_more()
            issue = back.issue

    async def test_the_first_comment_tells_an_unanswered_watcher_it_left_the_query(
        self, model: v1.ModelStub
    ) -> None:
        """``commenter:none`` (nobody answered yet) counts the comments each state had."""
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        nobody = term(v1.SearchField.COMMENTER, v1.SearchOperator.NONE)
        query = v1.StructuredQuery(filter=within(comp.id, nobody))
        async with _watching(model, v1.WatchRequest(caller=BOB, query=query)) as stream:
            raised = await change(model, issue, delta(priority=v1.Priority.P1))
            await _hears(stream, raised, left=False)
            answered = await change(model, raised.issue, comment="looking")
            await _hears(stream, answered, left=True)
            await change(model, answered.issue, comment="found it")
            await stream.nothing_more()

    async def test_a_named_commenters_first_comment_tells_the_watcher_it_left_the_query(
        self, model: v1.ModelStub
    ) -> None:
        """``-commenter:bob`` (bob has not answered) reads each state's comments."""
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        not_bob = negate(eq(v1.SearchField.COMMENTER, "bob"))
        query = v1.StructuredQuery(filter=within(comp.id, not_bob))
        async with _watching(model, v1.WatchRequest(caller=ALICE, query=query)) as stream:
            asked = await change(model, issue, comment="bob, any idea?")
            await _hears(stream, asked, left=False)
            answered = await change(model, asked.issue, comment="yes", caller=BOB)
            await _hears(stream, answered, left=True)
            await stream.nothing_more()

    async def test_a_change_that_keeps_the_issue_matching_is_an_ordinary_event(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id, assignee="alice")
        async with _watching(model, _open_of_alice(comp.id)) as stream:
            raised = await change(model, issue, delta(priority=v1.Priority.P0), comment="soon")
            await _hears(stream, raised, left=False)
            await stream.nothing_more()

    async def test_a_change_of_an_issue_that_never_matched_sends_nothing(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        bobs = await make_issue(model, comp.id, assignee="bob")
        closed = await make_issue(model, comp.id, assignee="alice", status=v1.Status.FIXED)
        async with _watching(model, _open_of_alice(comp.id)) as stream:
            await change(model, bobs, delta(assignee="carol"))
            await change(model, closed, delta(status=v1.Status.WONT_FIX_OBSOLETE))
            await stream.nothing_more()

    async def test_an_issue_moved_out_of_view_left_without_its_content(
        self, model: v1.ModelStub
    ) -> None:
        """Bob learns which issue left and by which change; nothing of what he may not see."""
        root = await make_component(model)
        secret = await make_component(
            model, parent_id=root.id, acl=[user_entry("alice", v1.Role.ADMIN)]
        )
        issue = await make_issue(model, root.id, assignee="alice")
        async with _watching(model, _open_of_alice(root.id)) as stream:
            moved = await change(
                model, issue, delta(component_id=secret.id), comment="the secret reason"
            )
            event = await stream.next()
            await stream.nothing_more()
        assert event.left_query
        assert event.issue == v1.Issue(id=issue.id)
        assert event.entry == v1.HistoryEntry(issue_id=issue.id, version=moved.entry.version)
        # Alice still views it: her watch hears nothing (it still matches for her).
        request = _open_of_alice(root.id)
        request.caller = ALICE
        async with _watching(model, request) as stream:
            kept = await change(model, moved.issue, comment="still mine")
            await _hears(stream, kept, left=False)

    async def test_a_comment_makes_an_issue_leave_a_query_on_its_modification_time(
        self, model: v1.ModelStub
    ) -> None:
        """``modified<T``: a comment changes no field but the issue's time, and leaves it."""
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        assert issue.modified_at is not None
        later = issue.modified_at + timedelta(milliseconds=1)
        stale = term(v1.SearchField.MODIFIED, v1.SearchOperator.LT, later)
        query = v1.StructuredQuery(filter=within(comp.id, stale))
        async with _watching(model, v1.WatchRequest(caller=BOB, query=query)) as stream:
            await asyncio.sleep(0.01)  # the comment's time is past `later`
            commented = await change(model, issue, comment="still here")
            await _hears(stream, commented, left=True)
            await stream.nothing_more()

    async def test_taking_an_issue_off_a_watched_hotlist_tells_the_watcher_it_left(
        self, model: v1.ModelStub
    ) -> None:
        """``hotlistid:X``: the membership before the change is the history's, not today's."""
        comp = await make_component(model)
        board = await make_hotlist(model)
        other = await make_hotlist(model)
        issue = await make_issue(model, comp.id, hotlist_ids=[board.id])
        query = v1.StructuredQuery(filter=within(comp.id, eq(v1.SearchField.HOTLIST, board.id)))
        async with _watching(model, v1.WatchRequest(caller=BOB, query=query)) as stream:
            moved = await change(model, issue, delta(hotlist_add=[other.id]))
            await _hears(stream, moved, left=False)
            taken = await change(model, moved.issue, delta(hotlist_remove=[board.id]))
            await _hears(stream, taken, left=True)
            await change(model, taken.issue, delta(hotlist_remove=[other.id]))
            await stream.nothing_more()

    async def test_a_custom_value_change_tells_the_watcher_the_issue_left(
        self, model: v1.ModelStub
    ) -> None:
        """``"Found In":4.2``: the values before the change are the history's, not today's.

        For a single-valued field (an option replaced, then cleared on an
        issue that no longer matched: nothing) and a multi-valued one (an
        option added, then the watched one removed), on a query naming both.
        """
        comp = await make_component(model)
        found_in = await define(model, comp.id, T.ENUM, options=("4.2", "4.3"))
        labels = await define(model, comp.id, T.ENUM_MULTI, options=("ui", "db"))
        issue = await make_issue(model, comp.id)
        issue = (await change(model, issue, _set(values(found_in.id, "4.2")))).issue
        both = await make_issue(model, comp.id)
        both = (await change(model, both, _set(values(labels.id, "ui")))).issue
        node = any_of(
            custom_term(found_in, v1.SearchOperator.EQ, "4.2"),
            custom_term(labels, v1.SearchOperator.EQ, "ui"),
        )
        query = v1.StructuredQuery(filter=within(comp.id, node))
        async with _watching(model, v1.WatchRequest(caller=BOB, query=query)) as stream:
            moved = await change(model, issue, _set(values(found_in.id, "4.3")))
            await _hears(stream, moved, left=True)
            await change(model, moved.issue, _set(values(found_in.id)))
            added = await change(model, both, _set(values(labels.id, "ui", "db")))
            await _hears(stream, added, left=False)
            taken = await change(model, added.issue, _set(values(labels.id, "db")))
            await _hears(stream, taken, left=True)
            await stream.nothing_more()

    async def test_an_access_list_that_shuts_the_watcher_out_sends_nothing(
        self, model: v1.ModelStub
    ) -> None:
        """Access lists are judged as they are now, before and after a change alike.

        Taking Bob's access away changes no issue, so no event; a later change
        of the issue matched the query for Bob neither before nor after it, so
        it sends nothing either (it is no leave he could be told of without
        telling him of an issue he may not view), as his search would no longer
        list the issue.
        """
        comp = await make_component(model)
        issue = await make_issue(model, comp.id, assignee="alice")
        async with _watching(model, _open_of_alice(comp.id)) as stream:
            comp.acl = [user_entry("alice", v1.Role.ADMIN)]
            await update_component(model, comp, "acl")
            await change(model, issue, delta(status=v1.Status.FIXED), comment="done")
            await stream.nothing_more()

    async def test_failed_atomic_batch_produces_no_event(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        good = await make_issue(model, comp.id)
        stale = await make_issue(model, comp.id)
        await change(model, stale, comment="meanwhile")
        async with _watching(model, v1.WatchRequest(caller=BOB, issue_id=good.id)) as stream:
            await expect_error(
                model.batch_change_issues(
                    v1.BatchChangeIssuesRequest(
                        caller=ALICE,
                        issues=[
                            v1.IssueVersion(issue_id=good.id, expected_version=1),
                            v1.IssueVersion(issue_id=stale.id, expected_version=1),
                        ],
                        comment="all or nothing",
                        atomic=True,
                    )
                ),
                Status.ABORTED,
            )
            await stream.nothing_more()

    async def test_watch_never_reports_invisible_issues(self, model: v1.ModelStub) -> None:
        root = await make_component(model)
        secret_comp = await make_component(
            model, parent_id=root.id, acl=[user_entry("alice", v1.Role.ADMIN)]
        )
        secret = await make_issue(model, secret_comp.id, caller=ALICE)
        public = await make_issue(model, root.id)
        query = v1.StructuredQuery(filter=within(root.id))
        async with _watching(model, v1.WatchRequest(caller=BOB, query=query)) as stream:
            await change(model, secret, comment="hush", caller=ALICE)
            await change(model, public, comment="hello")
            event = await stream.next()
            assert event.issue is not None
            assert event.issue.id == public.id
            await stream.nothing_more()

    async def test_a_change_right_after_the_subscribed_marker_is_delivered(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        query = v1.StructuredQuery(filter=within(comp.id))
        requests = [
            v1.WatchRequest(caller=BOB, issue_id=issue.id),
            v1.WatchRequest(caller=BOB, query=query),
        ]
        for number, request in enumerate(requests):
            # _watching waits for the marker (and checks it carries nothing).
            async with _watching(model, request) as stream:
                made = await change(model, issue, comment=f"right away {number}")
                event = await stream.next()
            issue = made.issue
            assert not event.subscribed
            assert event.entry == made.entry

    async def test_watching_an_invisible_issue_is_not_found(self, model: v1.ModelStub) -> None:
        """The stream fails before its subscribed marker: no event says the issue exists."""
        comp = await make_component(model, acl=[user_entry("alice", v1.Role.ADMIN)])
        secret = await make_issue(model, comp.id, caller=ALICE)

        async def first_event() -> None:
            async for event in model.watch(
                v1.WatchRequest(caller=BOB, issue_id=secret.id), timeout=DELIVERY_TIMEOUT
            ):
                raise AssertionError(f"an invisible issue was watched: {event}")

        await expect_error(first_event(), Status.NOT_FOUND)

    async def test_a_query_naming_a_component_or_hotlist_unseen_is_refused_before_subscribing(
        self, model: v1.ModelStub
    ) -> None:
        """As a search's first page refuses it (SearchReferenceContract), not a silent watch."""
        root = await make_component(model)
        secret = await make_hotlist(model, caller=ALICE, private=True)

        async def first_event(node: v1.SearchNode) -> None:
            request = v1.WatchRequest(caller=BOB, query=v1.StructuredQuery(filter=node))
            async for event in model.watch(request, timeout=10):
                raise AssertionError(f"an unseen reference was watched: {event}")

        unknown = UNKNOWN_ID
        await expect_error(
            first_event(eq(v1.SearchField.COMPONENT, unknown)),
            Status.INVALID_ARGUMENT,
            f"component {unknown}",
        )
        await expect_error(
            first_event(within(root.id, eq(v1.SearchField.HOTLIST, secret.id))),
            Status.INVALID_ARGUMENT,
            f"hotlist {secret.id}",
        )
        await expect_error(
            first_event(eq(v1.SearchField.COMPONENT, "no such component")),
            Status.INVALID_ARGUMENT,
            "named 'no such component'",
        )
        request = v1.WatchRequest(caller=BOB, query=v1.StructuredQuery(filter=within(root.id)))
        async for event in model.watch(request, timeout=10):
            assert event.subscribed
            break
