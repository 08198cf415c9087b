"""Passes after migrating other than the queue drains, a batch past ``statement_timeout``.

0028's mention scans and the folds of 0021 and 0022 ran fixed batches
(1,000 issues, 5,000 rows): one past the migrate pool's timeout failed
every migrate at the same batch. They now halve as ``_queue_drains.drain``
does (``_halving``). The timeout is forced as in ``test_queue_drains``: the
pool's ``statement_timeout`` is 0.3 s and a writer holds what one batch
needs (an uncommitted queue row for the scan, a row lock for the folds), so
every batch holding it waits until the server cancels it.
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
from bugless_testing.model_contracts._attachments import upload
from bugless_testing.model_contracts._custom_fields import create, define, values
from bugless_testing.model_contracts._support import make_component, make_issue

_SCAN_LOGGER = "bugless_model_postgres._mention_scans"
_SCAN = "migration 0025's mention scan"
_PENDING = (
    "SELECT coalesce(array_agg(issue_id ORDER BY issue_id), '{}') FROM issue_mentions_pending"
)
_SCANS = "SELECT scanned_to, through_id FROM issue_mention_scans WHERE version = 25"


async def _connect(settings: ModelSettings) -> asyncpg.Connection:
    return await asyncpg.connect(
        settings.database_url, server_settings={"search_path": quote_schema(settings.schema)}
    )


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


@asynccontextmanager
async def _writer(settings: ModelSettings, statement: str, *args: object) -> AsyncIterator[None]:
    """A writer's transaction that ran ``statement`` and holds what it took while the block runs.

    It is rolled back after: what it wrote is not there for the next run.
    """
    writer = await _connect(settings)
    try:
        held = writer.transaction()
        await held.start()
        try:
            await writer.execute(statement, *args)
            yield
        finally:
            await held.rollback()
    finally:
        await writer.close()


async def _scan_row(conn: asyncpg.Connection) -> tuple[int, int] | None:
    """0025's scan: (scanned_to, through_id), or None when there is none."""
    row = await conn.fetchrow(_SCANS)
    return None if row is None else (row["scanned_to"], row["through_id"])


async def _scan_new_issues(model: v1.ModelStub, conn: asyncpg.Connection, count: int) -> list[int]:
    """``count`` new issues 0025's rule queues, alone in a scan of its own."""
    component = await make_component(model)
    ids = sorted(
        [(await make_issue(model, component.id, title=f"ask @bob {n}")).id for n in range(count)]
    )
    await conn.execute("DELETE FROM issue_mentions_pending")
    await conn.execute("DELETE FROM issue_mention_scans")
    await conn.execute(
        "INSERT INTO issue_mention_scans (version, scanned_to, through_id) VALUES (25, $1, $2)",
        ids[0] - 1,
        ids[-1],
    )
    return ids


async def test_a_scan_range_past_the_timeout_is_scanned_again_halved_down_to_the_issue(
    model_settings: ModelSettings, model: v1.ModelStub, caplog: pytest.LogCaptureFixture
) -> None:
    """[a b c d] cancelled, [a b] queued, [c d] cancelled, [c] queued, [d] alone: the error.

    It names issue d and the setting to raise; the scan is recorded up to
    c, and once the writer is gone the next run queues d and e and ends the
    scan. Progress is logged.
    """
    settings = dataclasses.replace(model_settings, statement_timeout_seconds=0.3)
    conn = await _connect(settings)
    try:
        a, b, c, d, e = await _scan_new_issues(model, conn, 5)
        held = "INSERT INTO issue_mentions_pending (issue_id) VALUES ($1)"
        async with _migrate_pool(settings) as pool:
            async with _writer(settings, held, d):
                with (
                    caplog.at_level(logging.INFO, logger=_SCAN_LOGGER),
                    pytest.raises(Unavailable) as info,
                ):
                    await queue_registered(pool, BACKFILL_RETRIES, batch=4, progress_seconds=0)
                assert await conn.fetchval(_PENDING) == [a, b, c]
                assert await _scan_row(conn) == (c, e)
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
        assert await conn.fetchval(_PENDING) == [a, b, c, d, e]
        assert await _scan_row(conn) is None
    finally:
        await conn.close()


async def test_migrate_stops_on_an_issue_the_scan_alone_runs_past_the_timeout_on(
    model_settings: ModelSettings, model: v1.ModelStub
) -> None:
    """The operator's view: ``migrate`` is Unavailable naming the issue, then succeeds.

    Before, the scan's one range of up to 1,000 issues was cancelled each
    time and ``migrate`` failed on it with the generic "ran too long",
    nothing of the range recorded.
    """
    settings = dataclasses.replace(model_settings, statement_timeout_seconds=0.3)
    conn = await _connect(settings)
    try:
        first, held, last = await _scan_new_issues(model, conn, 3)
        pending = "INSERT INTO issue_mentions_pending (issue_id) VALUES ($1)"
        async with _writer(settings, pending, held):
            with pytest.raises(Unavailable, match=f"scanning issue {held} \\(scanned up to id"):
                await PostgresBackend.migrate(settings)
            assert await _scan_row(conn) == (first, last)
        newest = PostgresBackend.migrations()[-1].version
        assert await PostgresBackend.migrate(settings) == newest
        assert await _scan_row(conn) is None
        assert await conn.fetchval(_PENDING) == []  # queued, then drained by the backfill
    finally:
        await conn.close()


@dataclasses.dataclass(frozen=True)
class _Fold:
    """One fold: how a test makes its rows, leaves them unfolded and holds one."""

    run: Callable[..., Awaitable[int]]
    logger: str
    name: str
    #: Makes ``count`` rows; their keys, in fold order.
    make: Callable[[v1.ModelStub, int], Awaitable[list[int]]]
    unfold: str
    folded: str
    hold: str
    row: str


async def _values(model: v1.ModelStub, count: int) -> list[int]:
    root = await make_component(model)
    note = await define(model, root.id, v1.CustomFieldType.TEXT)
    return [(await create(model, root.id, values(note.id, f"ÄPFEL {n}"))).id for n in range(count)]


async def _names(model: v1.ModelStub, count: int) -> list[int]:
    issue = await make_issue(model, (await make_component(model)).id)
    made = []
    for n in range(count):
        reply = await upload(model, issue.id, b"plan", name=f"Straßenplan-{n}.pdf")
        assert reply.attachment is not None
        made.append(reply.attachment.id)
    return made


_FOLDS = [
    pytest.param(
        _Fold(
            fold_rows,
            "bugless_model_postgres._custom_values",
            "migration 0021's fold of custom field values",
            _values,
            "UPDATE issue_custom_values SET folded = NULL WHERE issue_id = ANY ($1::bigint[])",
            "SELECT coalesce(array_agg(issue_id ORDER BY issue_id), '{}') FROM issue_custom_values"
            " WHERE issue_id = ANY ($1::bigint[]) AND folded IS NOT NULL",
            "SELECT 1 FROM issue_custom_values WHERE issue_id = $1 FOR UPDATE",
            "issue {}'s value of field",
        ),
        id="custom_values",
    ),
    pytest.param(
        _Fold(
            fold_names,
            "bugless_model_postgres._attachments",
            "migration 0022's fold of attachment names",
            _names,
            "UPDATE attachments SET folded_name = NULL WHERE id = ANY ($1::bigint[])",
            "SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM attachments"
            " WHERE id = ANY ($1::bigint[]) AND folded_name IS NOT NULL",
            "SELECT 1 FROM attachments WHERE id = $1 FOR UPDATE",
            "the name of attachment {}",
        ),
        id="attachment_names",
    ),
]


@pytest.mark.parametrize("what", _FOLDS)
async def test_a_fold_past_the_timeout_is_run_again_halved_down_to_the_row_at_fault(
    model_settings: ModelSettings,
    model: v1.ModelStub,
    caplog: pytest.LogCaptureFixture,
    what: _Fold,
) -> None:
    """[a b c d] cancelled, [a b] folded, [c d] cancelled, [c] folded, [d] alone: the error.

    It names row d and the setting to raise; d and e stay unfolded, and
    once the writer is gone the next run folds them. Before, every migrate
    failed on the first fixed batch of 5,000 with "ran too long".
    """
    settings = dataclasses.replace(model_settings, statement_timeout_seconds=0.3)
    conn = await _connect(settings)
    try:
        keys = await what.make(model, 5)
        a, b, c, d, _ = keys
        async with _migrate_pool(settings) as pool:
            await what.run(pool)  # whatever other tests left unfolded: not ours
            await conn.execute(what.unfold, keys)
            async with _writer(settings, what.hold, d):
                with (
                    caplog.at_level(logging.INFO, logger=what.logger),
                    pytest.raises(Unavailable) as info,
                ):
                    await what.run(pool, batch=4, progress_seconds=0)
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

            assert await what.run(pool, batch=4) == 2
        assert await conn.fetchval(what.folded, keys) == keys
    finally:
        await conn.close()


@pytest.mark.parametrize("what", _FOLDS)
async def test_migrate_stops_on_a_row_a_fold_alone_runs_past_the_timeout_on(
    model_settings: ModelSettings, model: v1.ModelStub, what: _Fold
) -> None:
    """The operator's view: ``migrate`` is Unavailable naming the row, then succeeds.

    Before, the fold's one batch was cancelled each time and ``migrate``
    failed on it with the generic "ran too long", nothing folded.
    """
    settings = dataclasses.replace(model_settings, statement_timeout_seconds=0.3)
    conn = await _connect(settings)
    try:
        keys = await what.make(model, 3)
        first, held, _ = keys
        async with _migrate_pool(settings) as pool:
            await what.run(pool)  # whatever other tests left unfolded: not ours
        await conn.execute(what.unfold, keys)
        async with _writer(settings, what.hold, held):
            with pytest.raises(Unavailable, match=f"folding {what.row.format(held)}"):
                await PostgresBackend.migrate(settings)
            assert await conn.fetchval(what.folded, keys) == [first]
        newest = PostgresBackend.migrations()[-1].version
        assert await PostgresBackend.migrate(settings) == newest
        assert await conn.fetchval(what.folded, keys) == keys
    finally:
        await conn.close()
