"""Contract: what a query Watch's two states read beyond the row (capability ``watch``).

:class:`~bugless_testing.model_contracts._watch.WatchContract` pins down the
``left_query`` rule (the issue matched the query just before the change
and does not as the change left it) on the issue's own fields; this one
pins down the parts of an issue that live beside it, which each state
reads as they were at its version: attachments (every attach and delete
is a history entry), the time the issue was closed, which a reopen
clears from the row, and the comments' authors (a redaction blanks a
comment where it was written, and its author still wrote it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

from bugless_core.model.backend import Capability
from bugless_core.search.build import negate, term
from bugless_proto import v1
from bugless_testing.events import EventStream
from bugless_testing.model_contracts._attachments import delete, upload
from bugless_testing.model_contracts._edits import redact
from bugless_testing.model_contracts._support import (
    ALICE,
    BOB,
    change,
    delta,
    eq,
    make_component,
    make_issue,
    within,
)
from bugless_testing.plugin import requires_capability


@contextlib.asynccontextmanager
async def _watching(
    model: v1.ModelStub, node: v1.SearchNode, after_position: int | None = None
) -> AsyncIterator[EventStream]:
    """Bob's watch of ``node``, from its subscribed marker on (a replay from ``after_position``)."""
    request = v1.WatchRequest(
        caller=BOB, query=v1.StructuredQuery(filter=node), after_position=after_position
    )
    stream = EventStream(model.watch(request, timeout=60))
    try:
        await stream.subscribed()
        yield stream
    finally:
        await stream.close()


def _seen(event: v1.WatchEvent) -> tuple[bool, int]:
    """Whether ``event`` is a leave, and the version of its change."""
    assert event.entry is not None
    return event.left_query, event.entry.version


@requires_capability(Capability.WATCH)
class WatchStateContract:
    """``left_query`` judges what lives beside the issue as it was at each state."""

    async def test_the_first_attachment_tells_a_watcher_of_issues_without_one_it_left(
        self, model: v1.ModelStub
    ) -> None:
        """``-has:attachment`` hears the attach as a leave, ``has:attachment`` the delete."""
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        bare = within(comp.id, term(v1.SearchField.ATTACHMENT, v1.SearchOperator.NONE))
        some = within(comp.id, term(v1.SearchField.ATTACHMENT, v1.SearchOperator.ANY))
        async with _watching(model, bare) as without, _watching(model, some) as with_:
            attached = await upload(model, issue.id, b"boom", name="crash.log")
            assert attached.attachment is not None
            assert attached.entry is not None
            assert _seen(await without.next()) == (True, attached.entry.version)
            assert _seen(await with_.next()) == (False, attached.entry.version)
            deleted = await delete(model, attached.attachment.id)
            assert deleted.entry is not None
            assert _seen(await without.next()) == (False, deleted.entry.version)
            assert _seen(await with_.next()) == (True, deleted.entry.version)
            await without.nothing_more()
            await with_.nothing_more()

    async def test_reopening_an_issue_closed_long_ago_tells_the_watcher_it_left(
        self, model: v1.ModelStub
    ) -> None:
        """``closed<T`` (closed before T): the reopen is a leave, live and on replay.

        The state before the reopen was closed when it was closed (before T),
        not when it last changed (a comment after T), nor when it was closed
        again later (after T, by the time a replay reads it).
        """
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        closed = await change(model, issue, delta(status=v1.Status.FIXED))
        assert closed.issue.closed_at is not None
        before = closed.issue.closed_at + timedelta(milliseconds=1)
        await asyncio.sleep(0.01)  # the comment's time is past `before`
        asked = await change(model, closed.issue, comment="still broken for me")
        long_ago = within(comp.id, term(v1.SearchField.CLOSED, v1.SearchOperator.LT, before))
        async with _watching(model, long_ago) as stream:
            reopened = await change(model, asked.issue, delta(status=v1.Status.ASSIGNED))
            event = await stream.next()
            assert _seen(event) == (True, reopened.entry.version)
            await change(model, reopened.issue, delta(status=v1.Status.FIXED))
            await stream.nothing_more()
        async with _watching(model, long_ago, event.position - 1) as replay:
            assert _seen(await replay.next()) == (True, reopened.entry.version)
            await replay.nothing_more()

    async def test_redacting_a_comment_does_not_bring_the_issue_back(
        self, model: v1.ModelStub
    ) -> None:
        """``-commenter:alice``: her comment is a leave; its redaction leaves her its author.

        The watcher is not told the issue matches again (a search would not
        list it either: a redacted comment was still written by its author).
        """
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        not_alice = within(comp.id, negate(eq(v1.SearchField.COMMENTER, ALICE.user_id)))
        async with _watching(model, not_alice) as stream:
            answered = await change(model, issue, comment="my token is hunter2", caller=ALICE)
            assert _seen(await stream.next()) == (True, answered.entry.version)
            await redact(
                model, issue.id, v1.RedactionTarget.COMMENT, entry_version=answered.entry.version
            )
            await stream.nothing_more()
