"""A migration lease's renewal failing for real, and what it logged.

:class:`bugless_core.migrations.LeaseLock` tells the database away from a bug
(:func:`bugless_core.database_errors.is_database_error`, which knows
asyncpg's "connection gone" errors): a renewal failing with one of those is
an outage (tried again at the next third of the lease; logged by its
:class:`~bugless_core.supervision.OutageLog`: a WARNING for the first failed
renewal, DEBUG for the next ones), anything else that is not the database's
own error a bug (logged with its traceback by the ``lease_renewal:migrate``
supervision, each time). The packages that hold their
migration lease on asyncpg (the CockroachDB Model backend, the
Authenticator's CockroachDB dialect) prove their lock does that with
:func:`failed_renewals` and one of the two ways to break a renewal here
(:func:`check_an_outage_is_logged_as_one` and
:func:`check_a_bug_is_logged_as_one` are the two checks they share):

* :func:`terminate_renewal`: the server ends the renewing connection, so
  the renewals after it fail with the server's own error, asyncpg's
  ``InternalClientError`` (a renewal caught between the server's goodbye and
  the socket's end) or ``InterfaceError`` (connection closed): every one an
  outage, whichever a run's timing gives;
* :func:`break_renewal_decoding`: the renewing connection decodes the
  renewal's ``bigint`` result with a codec that raises ``ValueError``: a bug
  on the renewal's path, which must not be taken for an outage.

A bare connection stands for the pool: an asyncpg pool reconnects, or
reports SQLSTATE 08003, on its own.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager

import asyncpg

from bugless_core.migrations import LeaseLock

#: Breaks the renewal; called with the renewing connection and another one.
RenewalBreaker = Callable[[asyncpg.Connection, asyncpg.Connection], Awaitable[None]]

_LOGGERS = ("bugless_core.leases", "bugless.supervision")


async def terminate_renewal(renewing: asyncpg.Connection, other: asyncpg.Connection) -> None:
    """End the renewing connection from the server's side (the renewals after it: an outage)."""
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
        super().__init__(logging.DEBUG)
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
        logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


def renewal_failures(records: Iterable[logging.LogRecord]) -> list[logging.LogRecord]:
    """The failed renewals of lease ``migrate`` among ``records``.

    A line from ``bugless_core.leases`` is an outage (its first failed
    renewal a WARNING, the next ones DEBUG: an
    :class:`~bugless_core.supervision.OutageLog`), an ERROR from
    ``bugless.supervision`` a bug.
    """
    return [r for r in records if _is_renewal_failure(r)]


def _is_renewal_failure(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    if record.name == "bugless_core.leases":
        return message.startswith("renewing lease migrate: ")
    return record.name == "bugless.supervision" and "lease_renewal:migrate" in message


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
    a second; whatever else the package configured is what is tested.
    Returns the log records of the first ``failures`` failed renewals: for
    an outage, from ``bugless_core.leases``, DEBUG lines after the WARNING
    that started it (an outage is not logged on every round); for a bug, an
    ERROR with its traceback from ``bugless.supervision`` each.
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
                    if len(renewal_failures(recorded.records)) >= failures:
                        break
                    await asyncio.sleep(0.01)
                else:
                    raise AssertionError(f"fewer than {failures} failed renewals in 30 s")
        return renewal_failures(recorded.records)[:failures]
    finally:
        await renewing.close()
        await other.close()


async def check_an_outage_is_logged_as_one(lock: LeaseLock, database: str) -> None:
    """Renewals on a connection the server closed are an outage: no traceback, tried again.

    Logged as one: a WARNING when it starts (the first failed renewal,
    whichever of the termination's errors it met), DEBUG for the next ones;
    never an ERROR from the supervision. The check a package that holds its
    migration lease on asyncpg runs against its own lock (schema
    ``lease_outage`` of ``database``).
    """
    logged = await failed_renewals(lock, database, "lease_outage", terminate_renewal, failures=3)
    assert all(r.name == "bugless_core.leases" and r.exc_info is None for r in logged), logged
    assert logged[0].levelno == logging.WARNING, logged
    assert all(r.levelno == logging.DEBUG for r in logged[1:]), logged
    assert "InterfaceError: connection is closed" in logged[-1].getMessage(), logged


async def check_a_bug_is_logged_as_one(lock: LeaseLock, database: str) -> None:
    """A bug on the renewal's path is an ERROR with its traceback, never an outage.

    Schema ``lease_bug`` of ``database``.
    """
    logged = await failed_renewals(lock, database, "lease_bug", break_renewal_decoding)
    assert all(r.name == "bugless.supervision" for r in logged), logged
    assert all(r.levelno == logging.ERROR for r in logged)
    assert logged[0].exc_info is not None
    assert logged[0].exc_info[0] is ValueError


__all__ = [
    "break_renewal_decoding",
    "check_a_bug_is_logged_as_one",
    "check_an_outage_is_logged_as_one",
    "failed_renewals",
    "renewal_failures",
    "terminate_renewal",
]
