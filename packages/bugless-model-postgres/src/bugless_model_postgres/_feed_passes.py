"""Sequencing passes run by a process's feed readers: one at a time, failures logged.

Where writes append to a pending table (bugless-model-cockroach), a
:class:`FeedSequencer` numbers the committed changes into ``change_feed``,
and the readers run it (:meth:`SequencingPasses.catch_up`) before they read
the head or the rows: ReadFeed, each Watch poll, pruning.

A pass that fails (UNAVAILABLE once the retry policy gave up, a lock it
waited out, a privilege revoked) does not fail the reader: the database
away is an outage (a WARNING when it starts, a reminder now and then, an
INFO line when a pass works again), anything else is logged once at ERROR
with its traceback until a pass works again, and the reader reads what is
numbered already. What the pass left stays pending, in its place: a later
pass numbers it above the head the reader saw, so a consumer resuming from
that head misses nothing. It used to fail the ReadFeed or Watch call, which
a reader could do nothing about, while the rows it would read were there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from bugless_core.database_errors import is_database_error
from bugless_core.errors import Unavailable
from bugless_core.outage import OutageLog
from bugless_model_postgres._database import translated_errors

_log = logging.getLogger(__name__)


class FeedSequencer(Protocol):
    """Numbers committed pending changes into ``change_feed`` (``Dialect.feed_append``)."""

    async def sequence(self) -> int:
        """Number every change committed so far; how many were numbered.

        Raises:
            Unavailable: the database is away, or the pass kept conflicting
                with another replica's.
        """
        ...


class SequencingPasses:
    """Runs a process's sequencing passes for its readers (see the module)."""

    def __init__(self, numbered_some: Callable[[], None]) -> None:
        """Call ``numbered_some()`` after a pass that numbered changes (wakes readers)."""
        self._numbered_some = numbered_some
        self._lock = asyncio.Lock()
        self._pass_started = float("-inf")
        self._outage = OutageLog(
            "change feed sequencing",
            logger=_log,
            meanwhile="readers read what is numbered; a later pass numbers the rest",
            unit="passes",
        )
        self._bug_logged = False

    async def catch_up(self, sequencer: FeedSequencer) -> None:
        """Have ``sequencer`` number what has committed so far; never raises (but cancellation).

        One pass at a time: a caller that waited for another caller's pass
        runs none of its own when that pass started after it asked (it saw
        every commit the caller must see); otherwise, that pass's snapshot
        may predate a commit the caller was told of, and it runs one.
        """
        asked = time.monotonic()
        async with self._lock:
            if self._pass_started > asked:
                return
            self._pass_started = time.monotonic()
            try:
                async with translated_errors():
                    numbered = await sequencer.sequence()
            except Exception as exc:
                self._failed(exc)
                return
        self._outage.recovered()
        if self._bug_logged:
            self._bug_logged = False
            _log.info("change feed sequencing: working again")
        if numbered:
            self._numbered_some()

    def _failed(self, exc: Exception) -> None:
        """Log a failed pass: an outage through the outage log, anything else once at ERROR."""
        if isinstance(exc, Unavailable) or is_database_error(exc):
            self._outage.failed(exc, stacklevel=3)
        elif not self._bug_logged:
            self._bug_logged = True
            _log.error(
                "change feed sequencing failed unexpectedly; readers read what is numbered "
                "(logged once until a pass works again)",
                exc_info=exc,
            )
        else:
            _log.debug("change feed sequencing still failing: %r", exc)
