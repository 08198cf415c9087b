"""The change feed on PostgreSQL: retention, and commit order under a held head row."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING

import pytest
from write_support import ADMIN, connected, fresh_component, migrated, wait_behind_lock

from bugless_core.errors import FeedPositionPruned
from bugless_core.model.backend import ModelSettings
from bugless_model_postgres import PostgresBackend, _watch
from bugless_proto import v1

if TYPE_CHECKING:
    from bugless_testing.postgres import ThrowawayPostgres

SECRET = "test-page-token-secret-0123456789"


async def _short_retention_settings(postgres_server: ThrowawayPostgres) -> ModelSettings:
    """Settings of a database of its own whose Model keeps the feed for one second."""
    url = await postgres_server.acreate_database(f"feed_{uuid.uuid4().hex[:8]}")
    return ModelSettings(database_url=url, page_token_secret=SECRET, feed_retention_seconds=1)


@pytest.fixture
async def short_retention(postgres_server: ThrowawayPostgres) -> AsyncIterator[PostgresBackend]:
    """A backend on its own database keeping the feed for one second."""
    async with migrated(await _short_retention_settings(postgres_server)) as backend:
        yield backend


async def _issue(backend: PostgresBackend, title: str) -> v1.Issue:
    component = await fresh_component(backend, "feed")
    return await backend.create_issue(
        v1.CreateIssueRequest(
            caller=ADMIN, fields=v1.IssueFields(title=title, component_id=component.id)
        )
    )


async def test_a_position_older_than_the_retention_is_failed_precondition(
    short_retention: PostgresBackend,
) -> None:
    backend = short_retention
    await _issue(backend, "old")
    await asyncio.sleep(1.5)
    await _issue(backend, "new")
    await backend._feed.prune()  # due now, as it would be within a minute
    with pytest.raises(FeedPositionPruned) as caught:
        await backend.read_feed(v1.ReadFeedRequest(caller=ADMIN, after_position=0))
    assert "retention" in caught.value.message
    assert caught.value.reason == "FEED_POSITION_PRUNED"
    assert "resume at the head" in caught.value.message
    oldest = int(caught.value.metadata["oldest_position"])
    head = int(caught.value.metadata["head_position"])
    assert oldest == head - 1  # the second issue's component and issue remain
    kept = await backend.read_feed(v1.ReadFeedRequest(caller=ADMIN, after_position=oldest - 1))
    assert [c.position for c in kept.changes] == [oldest, head]
    assert kept.oldest_position == oldest


async def test_a_watch_resumed_below_the_retention_is_failed_precondition(
    short_retention: PostgresBackend,
) -> None:
    """A resumed Watch answers as ReadFeed does, telling the watcher to re-read."""
    backend = short_retention
    old = await _issue(backend, "old")
    await asyncio.sleep(1.5)
    await _issue(backend, "new")
    await backend._feed.prune()
    request = v1.WatchRequest(caller=ADMIN, issue_id=old.id, after_position=0)
    with pytest.raises(FeedPositionPruned) as caught:
        await anext(aiter(backend.watch(request)))
    assert "retention" in caught.value.message
    assert "re-read the current state" in caught.value.message
    head = int(caught.value.metadata["head_position"])
    oldest = int(caught.value.metadata["oldest_position"])
    assert oldest == head - 1
    request.after_position = oldest - 1  # nothing after it is pruned: accepted
    stream = backend.watch(request)
    assert isinstance(stream, AsyncGenerator)  # PostgresBackend.watch is one
    marker = await anext(stream)
    await stream.aclose()
    assert marker.subscribed
    assert marker.position == head


async def test_a_watch_whose_replay_is_pruned_under_it_fails_instead_of_skipping(
    short_retention: PostgresBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows pruned between two reads of a replay leave a gap in the positions it
    reads: the stream fails FAILED_PRECONDITION rather than skip those changes."""
    monkeypatch.setattr(_watch, "_WATCH_BATCH", 1)
    backend = short_retention
    issue = await _issue(backend, "pruned under a replay")
    start = (
        await backend.read_feed(v1.ReadFeedRequest(caller=ADMIN, head_only=True))
    ).head_position
    for n in range(3):
        response = await backend.change_issue(
            v1.ChangeIssueRequest(
                caller=ADMIN, issue_id=issue.id, expected_version=issue.version, comment=f"{n}"
            )
        )
        assert response.issue is not None
        issue = response.issue
    stream = backend.watch(v1.WatchRequest(caller=ADMIN, issue_id=issue.id, after_position=start))
    assert (await anext(aiter(stream))).subscribed
    first = await anext(aiter(stream))
    assert first.entry is not None
    assert first.entry.version == 2
    await asyncio.sleep(1.5)
    await _issue(backend, "newer")  # pruning keeps the newest change: make one
    await backend._feed.prune()
    with pytest.raises(FeedPositionPruned, match="retention"):
        await asyncio.wait_for(anext(aiter(stream)), 10)


async def test_pruning_runs_periodically_without_any_reader(
    postgres_server: ThrowawayPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ReadFeed call at all (no notifier deployed): the backend's own task prunes."""
    monkeypatch.setattr(_watch, "PRUNE_EVERY_SECONDS", 0.2)
    settings = await _short_retention_settings(postgres_server)
    async with migrated(settings) as backend:
        await _issue(backend, "old")
        await asyncio.sleep(1.5)
        await _issue(backend, "new")
        started = backend._feed.prunings
        async with asyncio.timeout(10):
            while backend._feed.prunings < started + 2:  # noqa: ASYNC110 - a counter, no event
                await asyncio.sleep(0.1)
        async with connected(settings, 1) as (conn,):
            pruned = await conn.fetchval(
                "SELECT position FROM change_feed_state WHERE name = 'pruned'"
            )
            kept = await conn.fetchval("SELECT count(*) FROM change_feed")
        assert pruned == 2, "the first component and issue went"
        assert kept == 2, "the second ones stay"
    assert backend._feed._pruner is None, "close stops the task"


async def test_a_writer_waits_for_the_holder_of_the_head_row(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings
) -> None:
    """Positions follow commit order: a transaction that took a position commits
    before any later writer can take the next one, so no reader ever sees n + 1
    committed while n is still to come."""
    backend = bugless_model_backend
    issue = await _issue(backend, "ordering")
    async with connected(model_settings, 2) as (holder, watcher):
        tx = holder.transaction()
        await tx.start()
        taken = await holder.fetchval(
            "UPDATE change_feed_state SET position = position + 1 WHERE name = 'head' "
            "RETURNING position"
        )
        later = asyncio.ensure_future(
            backend.change_issue(
                v1.ChangeIssueRequest(
                    caller=ADMIN, issue_id=issue.id, expected_version=1, comment="later"
                )
            )
        )
        await wait_behind_lock(watcher, later)
        assert not later.done()
        seen = await backend.read_feed(v1.ReadFeedRequest(caller=ADMIN, head_only=True))
        assert seen.head_position == taken - 1
        await holder.execute(
            "INSERT INTO change_feed (position, committed_at) VALUES ($1, now())", taken
        )
        await tx.commit()
        await asyncio.wait_for(later, 10)
    after = await backend.read_feed(v1.ReadFeedRequest(caller=ADMIN, after_position=taken - 1))
    assert [c.position for c in after.changes] == [taken, taken + 1]
    assert [(e.issue_id, e.version) for e in after.changes[1].entries] == [(issue.id, 2)]
