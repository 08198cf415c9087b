"""A migration lease's renewal failing for real, and what it logged.

:class:`bugless_core.migrations.LeaseLock` is told its driver's client-side
errors (``expected``): a renewal failing with one of those is an outage (a
WARNING, tried again at the next third of the lease), anything else that is
not the database's own error a bug (logged with its traceback by the
``lease_renewal:migrate`` supervision). The packages that hold their
migration lease on asyncpg (the CockroachDB Model backend, the
Authenticator's CockroachDB dialect) prove their lock does that with
:func:`failed_renewals` and one of the two ways to break a renewal here:

* :func:`terminate_renewal`: the server ends the renewing connection, so
  the next renewal raises asyncpg's ``InterfaceError`` (connection closed,
  no SQLSTATE): the outage a lock given asyncpg's errors must expect;
* :func:`break_renewal_decoding`: the renewing connection decodes the
  renewal's ``bigint`` result with a codec that raises ``ValueError``: a bug
  on the renewal's path, which no ``expected`` may hide.

A bare connection stands for the pool: an asyncpg pool reconnects, or
reports SQLSTATE 08003, on its own.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

import asyncpg

from bugless_core.migrations import LeaseLock

#: Breaks the renewal; called with the renewing connection and another one.
RenewalBreaker = Callable[[asyncpg.Connection, asyncpg.Connection], Awaitable[None]]

_LOGGERS = ("bugless_core.leases", "bugless.supervision")


async def terminate_renewal(renewing: asyncpg.Connection, other: asyncpg.Connection) -> None:
    """End the renewing connection from the server's side (the next renewal: ``InterfaceError``)."""
    pid = renewing.get_server_pid()
    assert await other.fetchval("SELECT pg_terminate_backend($1)", pid)


async def break_renewal_decoding(renewing: asyncpg.Connection, other: asyncpg.Connection) -> None:
    """Make the renewing connection's ``bigint`` decoder raise ``ValueError`` (a bug)."""
    del other

    def undecodable(text: str) -> int:
        raise ValueError(f"a bug decoding {text!r}")

    await renewing.set_type_codec(
        "int8", schema="pg_catalog", encoder=str, decoder=undecodable, format="text"
    )


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def _recording() -> Iterator[_Records]:
    handler = _Records()
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
    try:
        yield handler
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


def _failed_renewals(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    return [
        r
        for r in records
        if (r.name == "bugless_core.leases" and r.getMessage().startswith("could not renew lease"))
        or (r.name == "bugless.supervision" and "lease_renewal:migrate" in r.getMessage())
    ]


async def failed_renewals(
    lock: LeaseLock,
    database: str,
    schema: str,
    breaker: RenewalBreaker,
    *,
    failures: int = 2,
) -> list[logging.LogRecord]:
    """Hold ``lock``'s lease in ``schema``, break its renewal, return the failures logged.

    ``lock`` is used as it is but for its lease's life, shortened to 60 ms
    (a renewal every 20 ms) so that ``failures`` renewals fail in well under
    a second; whatever else the package configured (its ``expected``) is
    what is tested. Returns the log records of the first ``failures`` failed
    renewals: a WARNING from ``bugless_core.leases`` each for an outage, an
    ERROR with its traceback from ``bugless.supervision`` for a bug.
    """
    short = copy.copy(lock)
    short.ttl_ms = 60
    renewing = await asyncpg.connect(database)
    other = await asyncpg.connect(database)
    try:
        with _recording() as recorded:
            async with short.held(renewing, other, schema):
                await breaker(renewing, other)
                for _ in range(3000):  # a bound on a wait for an event: 30 s
                    if len(_failed_renewals(recorded.records)) >= failures:
                        break
                    await asyncio.sleep(0.01)
                else:
                    raise AssertionError(f"fewer than {failures} failed renewals in 30 s")
        return _failed_renewals(recorded.records)[:failures]
    finally:
        await renewing.close()
        await other.close()


__all__ = ["break_renewal_decoding", "failed_renewals", "terminate_renewal"]
