"""Passes after migrating other than the queue drains, a batch past ``statement_timeout``.

0028's mention scans and the folds of 0021 and 0022 ran fixed batches
(1,000 issues, 5,000 rows): one past the migrate pool's timeout failed
every migrate at the same batch. They now halve as ``_queue_drains.drain``
does (``_halving``). The timeout is forced as in ``test_queue_drains``: the
pool's ``statement_timeout`` is 0.3 s and a writer holds what one batch
needs (an uncommitted queue row for the scan, a row lock for the folds), so
every batch holding it waits until the server cancels it. The ``migrate``
checks are ``bugless_testing.pass_halving``'s, run on CockroachDB's backend too.
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
from bugless_model_postgres._attachments import fold_names
from bugless_model_postgres._custom_values import fold_rows
from bugless_model_postgres._database import server_settings
from bugless_model_postgres._mention_scans import queue_registered
from bugless_model_postgres._mentions import BACKFILL_RETRIES
from bugless_proto import v1
from bugless_testing.mention_scans import SqlBackendClass
from bugless_testing.pass_halving import (
    FOLDS,
    PENDING,
    TIMEOUT_SECONDS,
    Fold,
    PassHalvingChecks,
    connect,
    scan_new_issues,
    scan_row,
    writer,
)

_SCAN_LOGGER = "bugless_model_postgres._mention_scans"
_SCAN = "migration 0025's mention scan"
#: Each fold's pass, by the name it speaks of itself with.
_RUNS: dict[str, Callable[..., Awaitable[int]]] = {
    "migration 0021's fold of custom field values": fold_rows,
    "migration 0022's fold of attachment names": fold_names,
}


@pytest.fixture
def pass_halving_backend() -> SqlBackendClass:
    """The backend whose ``migrate`` runs the passes."""
    return PostgresBackend


class TestPassHalving(PassHalvingChecks):
    """The checks of :class:`PassHalvingChecks`, on this package's backend."""


@asynccontextmanager
async def _migrate_pool(settings: ModelSettings) -> AsyncIterator[asyncpg.Pool]:
    """A pool as ``migrate``'s: the settings' ``statement_timeout``."""
    pool = await asyncpg.create_pool(
        settings.database_url,
        min_size=1,
        max_size=2,
        server_settings=server_settings(settings, quote_schema(settings.schema)),
    )
    try:
        yield pool
    finally:
        await pool.close()


async def test_a_scan_range_past_the_timeout_is_scanned_again_halved_down_to_the_issue(
    model_settings: ModelSettings, model: v1.ModelStub, caplog: pytest.LogCaptureFixture
) -> None:
    """[a b c d] cancelled, [a b] queued, [c d] cancelled, [c] queued, [d] alone: the error.

    It names issue d and the setting to raise; the scan is recorded up to
    c, and once the writer is gone the next run queues d and e and ends the
    scan. Progress is logged.
    """
    settings = dataclasses.replace(model_settings, statement_timeout_seconds=TIMEOUT_SECONDS)
    conn = await connect(settings)
    try:
        a, b, c, d, e = await scan_new_issues(model, conn, 5)
        held = "INSERT INTO issue_mentions_pending (issue_id) VALUES ($1)"
        async with _migrate_pool(settings) as pool:
            async with writer(settings, held, d):
                with (
                    caplog.at_level(logging.INFO, logger=_SCAN_LOGGER),
                    pytest.raises(Unavailable) as info,
                ):
                    await queue_registered(pool, BACKFILL_RETRIES, batch=4, progress_seconds=0)
                assert await conn.fetchval(PENDING) == [a, b, c]
                assert await scan_row(conn) == (c, e)
            assert info.value.message.startswith(
                f"{_SCAN}: scanning issue {d} (scanned up to id {c}) alone ran past the "
                "database's statement_timeout (300ms), or waited that long for a lock on it; "
                "nothing of the scan changed. Raise statement_timeout_seconds "
                "(--statement-timeout-seconds, BUGLESS_STATEMENT_TIMEOUT_SECONDS)"
            ), info.value.message
            said = [r.getMessage() for r in caplog.records if r.name == _SCAN_LOGGER]
            assert said == [
                f"{_SCAN}: a batch ran past statement_timeout and was cancelled; "
                "taking 2 issues a transaction from here",
                f"{_SCAN}: queueing issues with ids after {a - 1} up to {e}",
                f"{_SCAN}: at id {b} of {e}, 2 issues queued so far",
                f"{_SCAN}: a batch ran past statement_timeout and was cancelled; "
                "taking 1 issues a transaction from here",
                f"{_SCAN}: at id {c} of {e}, 3 issues queued so far",
            ]

            assert await queue_registered(pool, BACKFILL_RETRIES, batch=4) == 2
        assert await conn.fetchval(PENDING) == [a, b, c, d, e]
        assert await scan_row(conn) is None
    finally:
        await conn.close()


@pytest.mark.parametrize("what", FOLDS)
async def test_a_fold_past_the_timeout_is_run_again_halved_down_to_the_row_at_fault(
    model_settings: ModelSettings,
    model: v1.ModelStub,
    caplog: pytest.LogCaptureFixture,
    what: Fold,
) -> None:
    """[a b c d] cancelled, [a b] folded, [c d] cancelled, [c] folded, [d] alone: the error.

    It names row d and the setting to raise; d and e stay unfolded, and
    once the writer is gone the next run folds them. Before, every migrate
    failed on the first fixed batch of 5,000 with "ran too long".
    """
    run = _RUNS[what.name]
    settings = dataclasses.replace(model_settings, statement_timeout_seconds=TIMEOUT_SECONDS)
    conn = await connect(settings)
    try:
        keys = await what.make(model, 5)
        a, b, c, d, _ = keys
        async with _migrate_pool(settings) as pool:
            await run(pool)  # whatever other tests left unfolded: not ours
            await conn.execute(what.unfold, keys)
            async with writer(settings, what.hold, d):
                with (
                    caplog.at_level(logging.INFO, logger=what.logger),
                    pytest.raises(Unavailable) as info,
                ):
                    await run(pool, batch=4, progress_seconds=0)
                assert await conn.fetchval(what.folded, keys) == [a, b, c]
            assert info.value.message.startswith(f"{what.name}: folding {what.row.format(d)}"), (
                info.value.message
            )
            assert (
                "alone ran past the database's statement_timeout (300ms), or waited that long "
                "for a lock on it; nothing of that row changed. Raise statement_timeout_seconds "
                "(--statement-timeout-seconds, BUGLESS_STATEMENT_TIMEOUT_SECONDS)"
            ) in info.value.message
            said = [r.getMessage() for r in caplog.records if r.name == what.logger]
            assert said == [
                f"{what.name}: 5 rows to fold, 4 a statement",
                f"{what.name}: a batch ran past statement_timeout and was cancelled; "
                "taking 2 rows a statement from here",
                f"{what.name}: 2 rows folded, 3 left",
                f"{what.name}: a batch ran past statement_timeout and was cancelled; "
                "taking 1 rows a statement from here",
                f"{what.name}: 3 rows folded, 2 left",
            ]

            assert await run(pool, batch=4) == 2
        assert await conn.fetchval(what.folded, keys) == keys
    finally:
        await conn.close()
