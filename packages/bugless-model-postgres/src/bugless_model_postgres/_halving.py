"""Batches of a data pass after migrating that halve when the server cancels one.

Every pass ``PostgresBackend.migrate`` runs after its files (the queue
drains of :mod:`._queue_drains`, the mention scans of
:mod:`._mention_scans`, the folds of :mod:`._custom_values` and
:mod:`._attachments`) works in batches under the migrate pool's
``statement_timeout`` (``statement_timeout_seconds``). A fixed batch that
runs past it (long histories, many rows, or a wait that long for a writer's
lock) is cancelled and rolled back, and the next migrate would take the same
batch and fail on it again, for ever. So each pass runs its batches through
:class:`Halving`: a cancelled batch is taken again half as large, the
smaller size is kept for the rest of the run (what surrounds it is likely as
heavy), and only a batch of one that is cancelled stops the migrate, with
:func:`alone_past_timeout`'s error naming it and the setting to raise. One
implementation, so every pass says the same things the same way.

The folds of values and names a migration left without (0021, 0022) share
one loop as well, :func:`fold`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

from bugless_core.errors import Unavailable

__all__ = ["Fold", "Halving", "alone_past_timeout", "fold"]

T = TypeVar("T")


class Halving:
    """A pass's batch size: halved on each ``statement_timeout`` cancel, down to one.

    Attributes:
        size: The size the next batch takes.
    """

    def __init__(self, name: str, size: int, unit: str, log: logging.Logger) -> None:
        """A size starting at ``size``.

        Args:
            name: The pass in log lines ("the mention backfill").
            size: The first batch's size (at least 1).
            unit: What the size counts, per batch ("issues a transaction").
            log: The logger of the module that owns the pass.
        """
        self.name = name
        self.size = max(1, size)
        self.unit = unit
        self.log = log

    async def run(
        self,
        batch: Callable[[int], Awaitable[T]],
        alone: Callable[[], Awaitable[Unavailable]],
    ) -> T:
        """Run one batch of :attr:`size`, again halved each time the server cancels it.

        ``batch`` must change nothing when cancelled (one transaction, or one
        statement): it is simply taken again smaller.

        Raises:
            Unavailable: a batch of one was cancelled: ``alone``'s error.
        """
        while True:
            try:
                return await batch(self.size)
            except asyncpg.QueryCanceledError as exc:
                if self.size == 1:
                    raise await alone() from exc
                self.size = max(1, self.size // 2)
                self.log.warning(
                    "%s: a batch ran past statement_timeout and was cancelled; "
                    "taking %d %s from here",
                    self.name,
                    self.size,
                    self.unit,
                    extra={"batch": self.size},
                )


async def alone_past_timeout(pool: Any, what: str, unchanged: str, after: str) -> Unavailable:
    """The error of a batch of one that ran past ``statement_timeout``.

    Args:
        pool: The migrate pool (its ``statement_timeout`` is named).
        what: The pass and the one thing ("the mention backfill: recomputing
            the mentions of issue 7").
        unchanged: What the rollback left as it was ("that issue").
        after: Where the next migrate goes on from.
    """
    timeout = await pool.fetchval("SHOW statement_timeout")
    return Unavailable(
        f"{what} alone ran past the database's statement_timeout ({timeout}), or waited that "
        f"long for a lock on it; nothing of {unchanged} changed. Raise "
        "statement_timeout_seconds (--statement-timeout-seconds, "
        f"BUGLESS_STATEMENT_TIMEOUT_SECONDS) for the migrate and run it again: {after}"
    )


@dataclass(frozen=True)
class Fold:
    """A column a migration added, filled in Python by ``str.casefold``, and how it speaks.

    Attributes:
        name: The pass in log lines and errors ("migration 0021's fold of
            custom field values").
        count: How many rows are left to fold.
        select: Up to ``$1`` rows left to fold, in the order of their index.
        update: Folds the rows: takes :attr:`arguments`' values.
        arguments: The update's arguments for the rows selected.
        row: One row, for the error of a row that alone ran too long
            ("issue 3's value of field 5").
        log: The logger of the module that owns the column.
    """

    name: str
    count: str
    select: str
    update: str
    arguments: Callable[[Sequence[Any]], tuple[Any, ...]]
    row: Callable[[Any], str]
    log: logging.Logger


async def fold(pool: Any, what: Fold, *, batch: int, progress_seconds: float) -> int:
    """Fold every row ``what`` selects, ``batch`` rows a statement; how many were.

    Each select and each update commits on its own (a large table is never
    held in one transaction); the update folds only rows still unfolded, so
    a row rewritten meanwhile keeps what its write folded. A statement the
    server cancelled is taken again with half the rows (:class:`Halving`).
    How far it got is logged every ``progress_seconds``, and once when done.

    Raises:
        Unavailable: one row alone ran past ``statement_timeout``: the
            message names it and ``statement_timeout_seconds``; the rows
            before it are folded.
    """
    log = what.log
    halving = Halving(what.name, batch, "rows a statement", log)
    done = batches = 0
    said = started = time.monotonic()
    left = int(await pool.fetchval(what.count))
    if left:
        log.info(
            "%s: %d rows to fold, %d a statement",
            what.name,
            left,
            halving.size,
            extra={"left": left},
        )
    taken: list[Any] = []  # the rows being folded, for the error of a slow one

    async def one_batch(size: int) -> int:
        taken.clear()
        rows = await pool.fetch(what.select, size)
        taken[:] = rows
        if rows:
            await pool.execute(what.update, *what.arguments(rows))
        return len(rows)

    async def alone() -> Unavailable:
        row = what.row(taken[0]) if taken else "the next row"
        return await alone_past_timeout(
            pool,
            f"{what.name}: folding {row}",
            "that row",
            "the rows before it are folded, it and those after it are left to fold",
        )

    while folded := await halving.run(one_batch, alone):
        done += folded
        batches += 1
        if time.monotonic() - said >= progress_seconds:
            said = time.monotonic()
            log.info(
                "%s: %d rows folded, %d left",
                what.name,
                done,
                int(await pool.fetchval(what.count)),
                extra={"folded": done},
            )
    if done:
        log.info(
            "%s: done, %d rows folded in %d batches in %.0f s",
            what.name,
            done,
            batches,
            time.monotonic() - started,
            extra={"folded": done},
        )
    return done
