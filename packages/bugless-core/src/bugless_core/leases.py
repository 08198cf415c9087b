"""Expiring leases in a table: mutual exclusion where advisory locks do not exist.

CockroachDB has no advisory locks, so what PostgreSQL serialises with
``pg_advisory_lock`` is serialised there by owning a row of ``bugless_leases``
(in the service's own schema): taking it is one ``INSERT ... ON CONFLICT DO
UPDATE ... WHERE expired`` (atomic on both databases), holding it means
renewing it before it expires, and a holder that dies simply lets it expire.
The Model's CockroachDB backend and the Authenticator's CockroachDB dialect
hold their migration lease here (:class:`bugless_core.migrations.LeaseLock`);
the Model also leases its Snowflake node ids from the same table.

The functions take an asyncpg pool (anything with ``fetchrow``, ``fetchval``
and ``execute``) but import no driver, so bugless-core depends on none.
:func:`renew_every` tells a database outage from a bug with
:func:`bugless_core.database_errors.is_database_error` (which knows asyncpg's
"connection gone" errors without importing it); anything else is a bug,
supervised like every background loop (:mod:`bugless_core.supervision`).

A renewal that finds the lease taken by another holder (it expired before a
renewal got through) ends :func:`renew_every` with :data:`LEASE_LOST`, and
:func:`held_lease` cancels its body with it: two holders must not both go
on, and the body of a migration lease is one transaction, which the
cancellation rolls back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry

from bugless_core.backoff import Backoff
from bugless_core.database_errors import is_database_error
from bugless_core.errors import Unavailable
from bugless_core.supervision import OutageLog, SupervisedLoop

_log = logging.getLogger(__name__)

#: Named, expiring leases. ``fence_ms`` serves holders that must never overlap
#: in time-derived values (the Model's Snowflake node ids): the highest
#: millisecond its holders were allowed to use; a new holder starts above it.
CREATE_LEASES = """
CREATE TABLE IF NOT EXISTS bugless_leases (
    name       text PRIMARY KEY,
    holder     text NOT NULL,
    expires_at timestamptz NOT NULL,
    fence_ms   bigint NOT NULL DEFAULT 0
)
"""

#: Take lease $1 for holder $2 for $3 ms if it is free, expired, or already
#: ours; returns a row only when the caller holds it afterwards.
TAKE_LEASE = """
INSERT INTO bugless_leases AS l (name, holder, expires_at)
VALUES ($1, $2, now() + $3 * INTERVAL '1 millisecond')
ON CONFLICT (name) DO UPDATE
   SET holder = excluded.holder, expires_at = excluded.expires_at
 WHERE l.expires_at <= now() OR l.holder = excluded.holder
RETURNING fence_ms
"""

#: Extend lease $1 of holder $2 by $3 ms and raise its fence to $4; no row
#: when the lease was lost.
RENEW_LEASE = """
UPDATE bugless_leases
   SET expires_at = now() + $3 * INTERVAL '1 millisecond', fence_ms = greatest(fence_ms, $4)
 WHERE name = $1 AND holder = $2
RETURNING fence_ms
"""

#: Who holds lease $1 now (after a renewal found it taken).
LEASE_HOLDER = "SELECT holder FROM bugless_leases WHERE name = $1"

#: How :func:`held_lease` waits for a lease another replica holds: 50 ms
#: doubling to a second, unjittered (taking is one atomic statement, so
#: waiters polling in step collide on nothing).
TAKE_BACKOFF = Backoff(first_seconds=0.05, max_seconds=1.0, jitter=0.0)

#: ``Unavailable.reason`` of a lease another holder took while it was held.
LEASE_LOST = "LEASE_LOST"

#: Give lease $1 of holder $2 up at once (the row, and its fence, stay).
RELEASE_LEASE = """
UPDATE bugless_leases SET expires_at = now() WHERE name = $1 AND holder = $2
"""

#: The migration lease's name.
MIGRATION_LEASE = "migrate"
#: How long a migration lease lasts without renewal, and how long a replica
#: waits for another one's migration before giving up.
MIGRATION_LEASE_MS = 60_000
MIGRATION_WAIT_SECONDS = 600.0


def new_holder() -> str:
    """A name for this process's leases, unique across replicas."""
    return uuid.uuid4().hex


def is_serialization_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLSTATE 40001 (two writers on one row; retry or give up)."""
    return getattr(exc, "sqlstate", "") == "40001"


async def try_take(pool: Any, name: str, holder: str, ttl_ms: int) -> bool:
    """Take lease ``name`` if it is free; a lost race is "not taken", not an error."""
    try:
        return await pool.fetchrow(TAKE_LEASE, name, holder, ttl_ms) is not None
    except Exception as exc:  # another replica wrote the row at the same moment
        if is_serialization_failure(exc):
            return False
        raise


async def renew_every(
    pool: Any,
    name: str,
    holder: str,
    ttl_ms: int,
    *,
    expected: tuple[type[BaseException], ...] = (),
    registry: CollectorRegistry = REGISTRY,
) -> None:
    """Renew a lease every third of its life until cancelled or lost.

    A renewal the database failed
    (:func:`~bugless_core.database_errors.is_database_error`) is tried again
    at the next third: two more chances remain before the lease would
    expire. It is logged as a WARNING when the outage starts, then once a
    minute while it lasts and at INFO when a renewal gets through
    (:class:`~bugless_core.supervision.OutageLog`; each failure at DEBUG).
    Any other error is a bug: supervised as
    ``lease_renewal:<name>`` (logged once with its traceback, counted in
    ``bugless_background_failures_total`` in ``registry``) and retried
    after a backoff that never exceeds the third, for the same reason.
    ``expected`` names another driver's client-side errors that mean the
    database is away (asyncpg's are known already).

    Raises:
        Unavailable: (reason :data:`LEASE_LOST`) a renewal found the lease
            held by another holder; logged as an error, since whatever the
            lease protected may have run twice at once until now.
    """
    period = ttl_ms / 3000
    supervised = SupervisedLoop(
        f"lease_renewal:{name}",
        # A floor of half: a renewal retried at once would only meet the same bug.
        backoff=Backoff(first_seconds=min(1.0, period), max_seconds=period, jitter=0.5),
        registry=registry,
        outage=OutageLog(f"renewing lease {name}", logger=_log),
    )
    delay = period
    while True:
        await asyncio.sleep(delay)
        delay = period
        try:
            renewed = await pool.fetchval(RENEW_LEASE, name, holder, ttl_ms, 0)
        except Exception as exc:
            if is_database_error(exc, expected):
                supervised.unavailable(exc)
            else:
                delay = supervised.failed(exc)
            continue
        supervised.succeeded()
        if renewed is None:
            raise await _lost(pool, name)


async def _lost(pool: Any, name: str) -> Unavailable:
    """The error for lease ``name`` found taken, logged (the taker's name helps find it)."""
    try:
        taker = await pool.fetchval(LEASE_HOLDER, name)
    except Exception as exc:  # the error must be raised all the same
        _log.warning("could not read the holder of lease %s: %s: %s", name, type(exc).__name__, exc)
        taker = None
    taker = taker or "unknown"
    msg = (
        f"lost the lease {name!r} to holder {taker!r}: it expired before a renewal got "
        "through (database unreachable or this process stalled), and another replica took "
        "it; stopped what it protected"
    )
    _log.error("%s", msg)
    return Unavailable(msg, reason=LEASE_LOST, metadata={"lease": name, "holder": taker})


class _Watch:
    """Cancels the body of :func:`held_lease` when its renewal ends in an error."""

    def __init__(self, body: asyncio.Task[Any]) -> None:
        self.body = body
        self.watching = True
        self.lost: BaseException | None = None
        #: Whether the body was cancelled for it (and must be uncancelled).
        self.stopped = False

    def renewal_ended(self, renewal: asyncio.Task[None]) -> None:
        # Called from the loop, possibly after the body ended (then it only
        # records): a cancellation must not hit held_lease's own clean-up.
        if renewal.cancelled() or renewal.exception() is None:
            return
        self.lost = renewal.exception()
        if self.watching:
            self.stopped = True
            self.body.cancel()


@contextlib.asynccontextmanager
async def held_lease(
    pool: Any,
    name: str,
    *,
    ttl_ms: int = MIGRATION_LEASE_MS,
    wait: float = MIGRATION_WAIT_SECONDS,
    what: str = "migrating the database",
    expected: tuple[type[BaseException], ...] = (),
    registry: CollectorRegistry = REGISTRY,
) -> AsyncIterator[None]:
    """Hold lease ``name`` for the body, renewing it in the background.

    ``expected`` and ``registry`` go to :func:`renew_every`. If a renewal
    finds the lease taken by another holder, the body is cancelled (its
    transaction, if it runs one, rolls back) and its error becomes the
    renewal's: the lease's holder must never go on beside another.

    Raises:
        Unavailable: another replica held it for longer than ``wait``, or
            (reason :data:`LEASE_LOST`) took it while the body ran.
    """
    body = asyncio.current_task()
    if body is None:  # pragma: no cover - an async generator always runs in a task
        raise RuntimeError("held_lease needs a running task")
    holder = new_holder()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    refused = 0
    while not await try_take(pool, name, holder, ttl_ms):
        if loop.time() > deadline:
            msg = (
                f"another replica has been {what} for over {wait:.0f} s; check its logs, "
                "or wait for its lease to expire and try again"
            )
            raise Unavailable(msg)
        refused += 1
        await asyncio.sleep(TAKE_BACKOFF.delay(refused))
    watch = _Watch(body)
    renewal = asyncio.create_task(
        renew_every(pool, name, holder, ttl_ms, expected=expected, registry=registry)
    )
    renewal.add_done_callback(watch.renewal_ended)
    try:
        try:
            yield
        finally:
            watch.watching = False
    except asyncio.CancelledError:
        # Ours only if nobody else cancelled the body too (asyncio.timeout's rule).
        if watch.lost is None or not watch.stopped or body.uncancel() > 0:
            raise
        raise watch.lost from None
    finally:
        renewal.cancel()
        with contextlib.suppress(asyncio.CancelledError, Unavailable):
            await renewal
        with contextlib.suppress(Exception):  # it expires by itself if this fails
            await pool.execute(RELEASE_LEASE, name, holder)
    if watch.stopped and watch.lost is not None:  # the body swallowed the cancellation
        body.uncancel()
        raise watch.lost


__all__ = [
    "CREATE_LEASES",
    "LEASE_HOLDER",
    "LEASE_LOST",
    "MIGRATION_LEASE",
    "RELEASE_LEASE",
    "RENEW_LEASE",
    "TAKE_BACKOFF",
    "TAKE_LEASE",
    "held_lease",
    "is_serialization_failure",
    "new_holder",
    "renew_every",
    "try_take",
]
