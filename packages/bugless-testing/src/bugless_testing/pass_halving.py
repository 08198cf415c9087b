"""``migrate``'s passes after the files, a batch past ``statement_timeout`` (SQL backends).

0028's mention scans and the folds of 0021 and 0022 ran fixed batches
(1,000 issues, 5,000 rows): one past the migrate pool's timeout failed every
migrate at the same batch with "ran too long". They now halve down to one
issue or row, and only one that alone runs past the timeout stops
``migrate``, naming it. These checks run against each backend built on the
PostgreSQL package's migrations (its ``migrate`` is what operators run): a
test module subclasses :class:`PassHalvingChecks` and provides the
``pass_halving_backend`` fixture. The timeout is forced, not waited for by
luck: ``statement_timeout`` is 0.3 s and a writer holds what one batch needs
(an uncommitted queue row for the scan, a row lock for a fold).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg
import pytest

from bugless_core.errors import Unavailable
from bugless_core.migrations import quote_schema
from bugless_core.model.backend import ModelSettings
from bugless_proto import v1
from bugless_testing.mention_scans import SqlBackendClass
from bugless_testing.model_contracts._attachments import upload
from bugless_testing.model_contracts._custom_fields import create, define, values
from bugless_testing.model_contracts._support import make_component, make_issue

__all__ = [
    "FOLDS",
    "PENDING",
    "TIMEOUT_SECONDS",
    "Fold",
    "PassHalvingChecks",
    "connect",
    "scan_new_issues",
    "scan_row",
    "writer",
]

#: The migrate pool's ``statement_timeout`` in these checks.
TIMEOUT_SECONDS = 0.3
#: The issues queued for their mentions, in id order.
PENDING = "SELECT coalesce(array_agg(issue_id ORDER BY issue_id), '{}') FROM issue_mentions_pending"
#: A writer's uncommitted queue row: the scan's insert of that issue waits for it.
HOLD_PENDING = "INSERT INTO issue_mentions_pending (issue_id) VALUES ($1)"


async def connect(settings: ModelSettings) -> asyncpg.Connection:
    """A connection to the settings' schema, with no ``statement_timeout`` of its own."""
    return await asyncpg.connect(
        settings.database_url, server_settings={"search_path": quote_schema(settings.schema)}
    )


@asynccontextmanager
async def writer(settings: ModelSettings, statement: str, *args: object) -> AsyncIterator[None]:
    """A writer's transaction that ran ``statement`` and holds what it took while the block runs.

    It is rolled back after: what it wrote is not there for the next run.
    """
    conn = await connect(settings)
    try:
        held = conn.transaction()
        await held.start()
        try:
            await conn.execute(statement, *args)
            yield
        finally:
            await held.rollback()
    finally:
        await conn.close()


async def scan_row(conn: asyncpg.Connection) -> tuple[int, int] | None:
    """0025's scan: (scanned_to, through_id), or None when there is none."""
    row = await conn.fetchrow(
        "SELECT scanned_to, through_id FROM issue_mention_scans WHERE version = 25"
    )
    return None if row is None else (int(row["scanned_to"]), int(row["through_id"]))


async def scan_new_issues(model: v1.ModelStub, conn: asyncpg.Connection, count: int) -> list[int]:
    """``count`` new issues 0025's rule queues, alone in a scan of its own."""
    component = await make_component(model)
    made = [await make_issue(model, component.id, title=f"ask @bob {n}") for n in range(count)]
    ids = sorted(issue.id for issue in made)
    await conn.execute("DELETE FROM issue_mentions_pending")
    await conn.execute("DELETE FROM issue_mention_scans")
    await conn.execute(
        "INSERT INTO issue_mention_scans (version, scanned_to, through_id) VALUES (25, $1, $2)",
        ids[0] - 1,
        ids[-1],
    )
    return ids


@dataclasses.dataclass(frozen=True)
class Fold:
    """One fold: how a check makes its rows, leaves them unfolded and holds one.

    Attributes:
        name: The fold in log lines and errors.
        logger: The logger of the module that owns it.
        make: Makes ``count`` rows; their keys, in fold order.
        unfold: Sets the rows of keys ``$1`` back to unfolded.
        folded: The keys among ``$1`` folded, in order.
        hold: A writer's lock on the row of key ``$1``.
        row: The row of a key (``{}``), as the error names it.
    """

    name: str
    logger: str
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


FOLDS = [
    pytest.param(
        Fold(
            "migration 0021's fold of custom field values",
            "bugless_model_postgres._custom_values",
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
        Fold(
            "migration 0022's fold of attachment names",
            "bugless_model_postgres._attachments",
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


class PassHalvingChecks:
    """The operator's view: ``migrate`` is Unavailable naming the issue or row, then succeeds."""

    async def test_migrate_stops_on_an_issue_the_scan_alone_runs_past_the_timeout_on(
        self,
        pass_halving_backend: SqlBackendClass,
        model_settings: ModelSettings,
        model: v1.ModelStub,
    ) -> None:
        """[a b c] cancelled, [a] queued, [b] alone: the error; the scan is recorded up to a.

        Before, the scan's one range of up to 1,000 issues was cancelled each
        time and ``migrate`` failed on it with the generic "ran too long",
        nothing of the range recorded.
        """
        backend = pass_halving_backend
        settings = dataclasses.replace(model_settings, statement_timeout_seconds=TIMEOUT_SECONDS)
        conn = await connect(settings)
        try:
            first, held, last = await scan_new_issues(model, conn, 3)
            async with writer(settings, HOLD_PENDING, held):
                with pytest.raises(
                    Unavailable, match=f"scanning issue {held} \\(scanned up to id {first}\\)"
                ):
                    await backend.migrate(settings)
                assert await scan_row(conn) == (first, last)
            newest = backend.migrations()[-1].version
            assert await backend.migrate(settings) == newest
            assert await scan_row(conn) is None
            assert await conn.fetchval(PENDING) == []  # queued, then drained by the backfill
        finally:
            await conn.close()

    @pytest.mark.parametrize("what", FOLDS)
    async def test_migrate_stops_on_a_row_a_fold_alone_runs_past_the_timeout_on(
        self,
        pass_halving_backend: SqlBackendClass,
        model_settings: ModelSettings,
        model: v1.ModelStub,
        what: Fold,
    ) -> None:
        """[a b c] cancelled, [a] folded, [b] alone: the error; then all are folded.

        Before, the fold's one batch of up to 5,000 rows was cancelled each
        time and ``migrate`` failed on it with "ran too long", nothing folded.
        """
        backend = pass_halving_backend
        settings = dataclasses.replace(model_settings, statement_timeout_seconds=TIMEOUT_SECONDS)
        conn = await connect(settings)
        try:
            keys = await what.make(model, 3)
            first, held, _ = keys
            await backend.migrate(model_settings)  # whatever other tests left unfolded
            await conn.execute(what.unfold, keys)
            async with writer(settings, what.hold, held):
                with pytest.raises(Unavailable, match=f"folding {what.row.format(held)}"):
                    await backend.migrate(settings)
                assert await conn.fetchval(what.folded, keys) == [first]
            newest = backend.migrations()[-1].version
            assert await backend.migrate(settings) == newest
            assert await conn.fetchval(what.folded, keys) == keys
        finally:
            await conn.close()
