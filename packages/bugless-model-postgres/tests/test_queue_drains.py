"""Queues drained after migrating, a batch past ``statement_timeout`` (real PostgreSQL).

Both (0033's text rebuild, the mention backfill) run on
``_queue_drains.drain``: the same behaviour is checked of each. The timeout
is forced, not waited for by luck: the migrate pool's
``statement_timeout`` is 0.3 s and a writer holds one queued issue's row
lock, so every batch holding that issue waits at its id-order lock until the
server cancels it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg
import pytest

from bugless_core.errors import Unavailable
from bugless_core.migrations import quote_schema
from bugless_core.model.backend import ModelSettings
from bugless_model_postgres import PostgresBackend
from bugless_model_postgres._database import server_settings
from bugless_model_postgres._mentions import backfill
from bugless_model_postgres._text_rebuilds import rebuild
from bugless_proto import v1
from bugless_testing.model_contracts._support import make_component, make_issue


@dataclasses.dataclass(frozen=True)
class _Drain:
    """One queue: its table, its drain, its module's logger and how it speaks."""

    table: str
    run: Callable[..., Awaitable[int]]
    logger: str
    name: str
    done: str
    doing: str

    @property
    def queued(self) -> str:
        return f"SELECT coalesce(array_agg(issue_id ORDER BY issue_id), '{{}}') FROM {self.table}"


_DRAINS = [
    pytest.param(
        _Drain(
            "issue_text_rebuilds",
            rebuild,
            "bugless_model_postgres._text_rebuilds",
            "migration 0033's text rebuild",
            "remade",
            "remaking the text vectors of",
        ),
        id="text_rebuild",
    ),
    pytest.param(
        _Drain(
            "issue_mentions_pending",
            backfill,
            "bugless_model_postgres._mentions",
            "the mention backfill",
            "filled",
            "recomputing the mentions of",
        ),
        id="mention_backfill",
    ),
]


async def _queue_new_issues(
    model: v1.ModelStub, conn: asyncpg.Connection, drain: _Drain, count: int
) -> list[int]:
    """``count`` new issues, queued alone (other tests' queued issues are not ours)."""
    component = await make_component(model)
    ids = sorted([(await make_issue(model, component.id)).id for _ in range(count)])
    await conn.execute(f"DELETE FROM {drain.table}")
    await conn.executemany(f"INSERT INTO {drain.table} (issue_id) VALUES ($1)", [(i,) for i in ids])
    return ids


@asynccontextmanager
async def _holding(settings: ModelSettings, issue_id: int) -> AsyncIterator[None]:
    """A writer's transaction holding ``issue_id``'s row lock while the block runs."""
    writer = await asyncpg.connect(
        settings.database_url, server_settings={"search_path": quote_schema(settings.schema)}
    )
    try:
        async with writer.transaction():
            await writer.execute("SELECT 1 FROM issues WHERE id = $1 FOR UPDATE", issue_id)
            yield
    finally:
        await writer.close()


@pytest.mark.parametrize("drain", _DRAINS)
async def test_a_batch_past_the_timeout_is_taken_again_halved_down_to_the_issue_at_fault(
    model_settings: ModelSettings,
    model: v1.ModelStub,
    caplog: pytest.LogCaptureFixture,
    drain: _Drain,
) -> None:
    """[a b c d] cancelled, [a b] done, [c d] cancelled, [c] done, [d] alone: the error.

    It names issue d and the setting to raise; d and e stay queued, and once
    the lock is gone the next drain does them. Progress is logged. The
    mention backfill took fixed batches before: every run failed on the
    first one with "ran too long".
    """
    settings = dataclasses.replace(model_settings, statement_timeout_seconds=0.3)
    conn = await asyncpg.connect(
        settings.database_url, server_settings={"search_path": quote_schema(settings.schema)}
    )
    pool = await asyncpg.create_pool(
        settings.database_url,
        min_size=1,
        max_size=2,
        server_settings=server_settings(settings, quote_schema(settings.schema)),
    )
    try:
        *_, d, e = await _queue_new_issues(model, conn, drain, 5)
        async with _holding(settings, d):
            with (
                caplog.at_level(logging.INFO, logger=drain.logger),
                pytest.raises(Unavailable) as info,
            ):
                await drain.run(pool, batch=4, progress_seconds=0)
            assert await conn.fetchval(drain.queued) == [d, e]
        assert info.value.message.startswith(
            f"{drain.name}: {drain.doing} issue {d} alone ran "
            "past the database's statement_timeout (300ms), or waited that long for a lock "
            "on it; nothing of that issue changed. Raise statement_timeout_seconds "
            "(--statement-timeout-seconds, BUGLESS_STATEMENT_TIMEOUT_SECONDS)"
        ), info.value.message
        said = [r.getMessage() for r in caplog.records if r.name == drain.logger]
        assert said == [
            f"{drain.name}: 5 issues queued, 4 a transaction",
            f"{drain.name}: a batch ran past statement_timeout and was "
            "cancelled; taking 2 issues a transaction from here",
            f"{drain.name}: 2 issues {drain.done}, 3 left",
            f"{drain.name}: a batch ran past statement_timeout and was "
            "cancelled; taking 1 issues a transaction from here",
            f"{drain.name}: 3 issues {drain.done}, 2 left",
        ]

        assert await drain.run(pool, batch=4) == 2
        assert await conn.fetchval(drain.queued) == []
    finally:
        await pool.close()
        await conn.close()


@pytest.mark.parametrize("drain", _DRAINS)
async def test_migrate_stops_on_an_issue_that_alone_runs_past_the_timeout_and_finishes_after(
    model_settings: ModelSettings, model: v1.ModelStub, drain: _Drain
) -> None:
    """The operator's view: ``migrate`` is Unavailable naming the issue, then succeeds.

    Before, every fixed batch (200 issues, 500 for the mentions) holding
    such an issue was cancelled and ``migrate`` failed on it with the
    generic "ran too long" each time, with nothing of the batch done.
    """
    settings = dataclasses.replace(model_settings, statement_timeout_seconds=0.3)
    conn = await asyncpg.connect(
        settings.database_url, server_settings={"search_path": quote_schema(settings.schema)}
    )
    try:
        _, held, last = await _queue_new_issues(model, conn, drain, 3)
        async with _holding(settings, held):
            with pytest.raises(Unavailable, match=f"{drain.doing} issue {held} alone ran past"):
                await PostgresBackend.migrate(settings)
            assert await conn.fetchval(drain.queued) == [held, last]
        newest = PostgresBackend.migrations()[-1].version
        assert await PostgresBackend.migrate(settings) == newest
        assert await conn.fetchval(drain.queued) == []
    finally:
        await conn.close()
