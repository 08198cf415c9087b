"""Node-id leases: each replica's Snowflake node id, leased in ``bugless_leases``.

The lease table and its statements are :mod:`bugless_core.leases` (the
migration lease, :class:`bugless_core.migrations.LeaseLock`, lives there too).

* A **node-id lease** gives one replica a Snowflake node id (0..1023). It is
  renewed in the background; each renewal also records the replica's
  *fence*, the highest millisecond it may put in an id until the next
  renewal. The generator stops issuing at the fence, and whoever takes the
  node id next starts above it, so two replicas never mint the same id even
  when their clocks disagree.

The renewal is the one thing that keeps ids coming: when it stops, the
generator reaches its fence and every create fails. So a database error is
logged and retried at the next third of the lease, and anything else (a bug)
goes through :class:`~bugless_core.supervision.SupervisedLoop` as
``model.node_lease``: logged once with its traceback, counted, and the
renewal restarted after a backoff instead of ending in silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from bugless_core import leases
from bugless_core.backoff import Backoff
from bugless_core.database_errors import is_database_error
from bugless_core.errors import Unavailable
from bugless_core.supervision import OutageLog, SupervisedLoop
from bugless_model_cockroach import _queries as q
from bugless_model_cockroach._snowflake import MAX_NODE_ID, SnowflakeGenerator, wall_clock_ms

_log = logging.getLogger(__name__)

#: How long a node-id lease lasts without renewal; renewed every third of it.
NODE_LEASE_MS = 30_000
#: The pause before renewing again after a conflict with a replica probing
#: the row: 10 ms doubling to 40 ms, jittered so the two part, with a floor of
#: half (a renewal retried at once meets the same probe).
_RENEW_CONFLICT_BACKOFF = Backoff(first_seconds=0.01, max_seconds=0.04, jitter=0.5)
#: Tries to take a node id before giving up with "no node id is free".
_TAKE_TRIES = 20
#: The pause between them: 10 ms doubling to 100 ms, all of it drawn at
#: random (full jitter). Replicas started together collide here (one
#: transaction wins, the others fail with a serialization error or find their
#: pick taken); with the fixed 50 ms they had, the losers retried in step and
#: met again. No floor: a collision is another replica's take, done or
#: nearly so when the loser hears of it, and a try at once picks again among
#: the ids still free; full jitter parts the losers the most. When every node
#: id is held, the 19 pauses wait 1.65 s at most and about 0.8 s on average,
#: as patient as the 20 x 50 ms (1 s) before.
_TAKE_BACKOFF = Backoff(first_seconds=0.01, max_seconds=0.1)


class NodeLease:
    """This replica's Snowflake node id, leased and renewed in the background.

    Attributes:
        generator: Mints ids for the current node id; replaced if the lease
            is ever lost and a new node id taken.
    """

    def __init__(
        self, pool: asyncpg.Pool, *, ttl_ms: int = NODE_LEASE_MS, max_node_id: int = MAX_NODE_ID
    ) -> None:
        """Lease through ``pool``; call :meth:`start` before minting ids."""
        self._pool = pool
        self._ttl_ms = ttl_ms
        self._max_node_id = max_node_id
        self.holder = leases.new_holder()
        self.name = ""
        self.generator: SnowflakeGenerator | None = None
        self._renewal: asyncio.Task[None] | None = None
        self._supervised = SupervisedLoop(
            "model.node_lease",
            outage=OutageLog(
                "renewing the node id lease",
                logger=_log,
                meanwhile="new ids stop at the lease's fence until a renewal gets through",
            ),
        )

    @property
    def node_id(self) -> int:
        """The node id held now."""
        if self.generator is None:
            msg = "the node id lease has not been taken yet"
            raise Unavailable(msg)
        return self.generator.node_id

    async def start(self) -> None:
        """Take a free node id and keep renewing it.

        Raises:
            Unavailable: every node id is held by a live replica.
        """
        await self._take()
        self._renewal = asyncio.create_task(self._supervised.run(self._keep_renewing))

    async def _take(self) -> None:
        for tries in range(1, _TAKE_TRIES + 1):
            try:
                row = await self._pool.fetchrow(
                    q.TAKE_NODE_LEASE, self._ttl_ms, self.holder, self._max_node_id
                )
            except asyncpg.SerializationError:
                row = None  # another replica took a node id at the same moment
            if row is not None:
                self.name = row["name"]
                floor_ms = int(row["fence_ms"])
                until_ms = await self._renew()
                if until_ms is not None:
                    node_id = int(self.name.removeprefix("node:"))
                    self.generator = SnowflakeGenerator(
                        node_id, floor_ms=floor_ms, until_ms=until_ms
                    )
                    _log.info("leased Snowflake node id %d", node_id)
                    return
            if tries < _TAKE_TRIES:
                await asyncio.sleep(_TAKE_BACKOFF.delay(tries))
        msg = (
            f"no Snowflake node id is free: all {self._max_node_id + 1} are leased by live "
            "replicas (or the database keeps refusing the lease)"
        )
        raise Unavailable(msg)

    async def _renew(self) -> int | None:
        """Extend the lease and our fence; the new fence, or None if lost."""
        fence = wall_clock_ms() + self._ttl_ms
        for attempt in range(5):
            try:
                found = await self._pool.fetchval(
                    leases.RENEW_LEASE, self.name, self.holder, self._ttl_ms, fence
                )
            except asyncpg.SerializationError:  # a replica probed our row: try again
                if attempt == 4:
                    raise
                await asyncio.sleep(_RENEW_CONFLICT_BACKOFF.delay(attempt + 1))
                continue
            return None if found is None else fence
        raise AssertionError  # pragma: no cover - the loop returns or raises

    async def _keep_renewing(self) -> None:
        retaking = False  # the lease was lost and no new node id taken yet
        while True:
            await asyncio.sleep(self._ttl_ms / 3000)
            try:
                fence = await self._renew()
            except Exception as exc:
                if not is_database_error(exc):
                    raise
                # The database is away: ids stop at the fence.
                self._supervised.unavailable(exc, during=self.name)
                continue
            if fence is not None and self.generator is not None:
                self.generator.extend(fence)
                self._supervised.succeeded()
                continue
            if not retaking:
                _log.warning("node id lease %s was lost; taking another node id", self.name)
            try:
                await self._take()
            except Exception as exc:
                # Every node id leased is Unavailable, a BuglessError: an outage too.
                if not is_database_error(exc):
                    raise
                retaking = True
                self._supervised.unavailable(exc, during="taking a new node id")
            else:
                retaking = False
                self._supervised.succeeded()

    async def stop(self) -> None:
        """Stop renewing and give the node id up at once."""
        if self._renewal is not None:
            self._renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewal
        if self.name:
            with contextlib.suppress(Exception):  # it expires by itself if this fails
                await self._pool.execute(leases.RELEASE_LEASE, self.name, self.holder)
