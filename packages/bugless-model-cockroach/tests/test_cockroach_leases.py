"""Node-id leases on a real database: two replicas never share a node id.

The migration lease is the core migration engine's LeaseLock, tested with it
(packages/bugless-core/tests/test_migrations.py).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import asyncpg
import pytest

from bugless_core.errors import Unavailable
from bugless_core.model.backend import ModelSettings
from bugless_model_cockroach import CockroachBackend
from bugless_model_cockroach._leases import _TAKE_BACKOFF, _TAKE_TRIES, NodeLease
from bugless_model_cockroach._snowflake import decompose, wall_clock_ms
from bugless_model_postgres.seam import release_as_is, server_settings
from bugless_proto import v1

ADMIN = v1.Caller(user_id="root", admin=True)


@pytest.fixture
async def pool(
    model_settings: ModelSettings, bugless_model_backend: CockroachBackend
) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the migrated conformance schema (its lease table included)."""
    made = await asyncpg.create_pool(
        model_settings.database_url,
        min_size=1,
        max_size=10,
        server_settings=server_settings(model_settings, f'"{model_settings.schema}"'),
        reset=release_as_is,
    )
    yield made
    await made.close()


async def test_two_replicas_hold_different_node_ids_and_mint_distinct_ordered_ids(
    model_settings: ModelSettings, bugless_model_backend: CockroachBackend
) -> None:
    first = bugless_model_backend
    second = await CockroachBackend.open(model_settings)
    try:
        assert first.node_id != second.node_id
        component = await first.create_component(
            v1.CreateComponentRequest(caller=ADMIN, name="two-replicas")
        )

        async def create(backend: CockroachBackend, n: int) -> int:
            issue = await backend.create_issue(
                v1.CreateIssueRequest(
                    caller=ADMIN, fields=v1.IssueFields(title=f"r{n}", component_id=component.id)
                )
            )
            return issue.id

        together = await asyncio.gather(*(create(first if n % 2 else second, n) for n in range(40)))
        assert len(set(together)) == 40
        assert {decompose(i)[1] for i in together} == {first.node_id, second.node_id}
        # One after the other, alternating replicas: ids follow creation time (to the
        # millisecond; within one millisecond they order by node id).
        sequential = [await create(first if n % 2 else second, n) for n in range(6)]
        stamps = [decompose(i)[0] for i in sequential]
        assert stamps == sorted(stamps)
        for earlier, later in itertools.pairwise(sequential):
            if decompose(earlier)[0] < decompose(later)[0]:
                assert earlier < later
    finally:
        await second.close()


async def test_replicas_starting_together_take_distinct_node_ids(pool: asyncpg.Pool) -> None:
    leases = [NodeLease(pool, max_node_id=1023) for _ in range(12)]
    try:
        await asyncio.gather(*(lease.start() for lease in leases))
        assert len({lease.node_id for lease in leases}) == 12
    finally:
        await asyncio.gather(*(lease.stop() for lease in leases))


def test_the_take_pauses_are_fully_jittered_and_as_patient_as_before() -> None:
    """10 ms doubling to 100 ms, any part of it: 1.65 s at most between the 20 tries."""
    assert _TAKE_BACKOFF.delay(1, lambda: 0.0) == pytest.approx(0.01)
    assert _TAKE_BACKOFF.delay(5, lambda: 0.0) == pytest.approx(0.1)
    assert _TAKE_BACKOFF.delay(19, lambda: 1.0 - 2**-53) == pytest.approx(0.0)
    patience = sum(_TAKE_BACKOFF.nominal(n) for n in range(1, _TAKE_TRIES))
    assert patience == pytest.approx(1.65)


async def test_replicas_contending_for_the_last_free_node_ids_all_end_with_distinct_ones(
    pool: asyncpg.Pool, bugless_model_backend: CockroachBackend
) -> None:
    """Ten replicas start at once with ten node ids free: each takes one, none twice.

    Every one of them collides (a serialization failure, or its pick taken
    first) until the last id left is its own, so each goes through the take
    loop's jittered retries; in step, they used to collide again and again.
    """
    contenders, highest = 10, 15
    busy = [n for n in range(highest + 1) if n != bugless_model_backend.node_id]
    busy = busy[: highest + 1 - contenders - (bugless_model_backend.node_id <= highest)]
    await pool.executemany(
        "INSERT INTO bugless_leases (name, holder, expires_at) "
        "VALUES ('node:' || $1::int::text, 'a live replica', now() + INTERVAL '1 hour') "
        "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
        "expires_at = excluded.expires_at",
        [(n,) for n in busy],
    )
    leases = [NodeLease(pool, max_node_id=highest) for _ in range(contenders)]
    try:
        await asyncio.gather(*(lease.start() for lease in leases))
        taken = {lease.node_id for lease in leases}
        assert len(taken) == contenders
        assert taken.isdisjoint({*busy, bugless_model_backend.node_id})
        assert max(taken) <= highest
    finally:
        await asyncio.gather(*(lease.stop() for lease in leases))
        await pool.execute(
            "DELETE FROM bugless_leases WHERE holder = 'a live replica' AND name LIKE 'node:%'"
        )


async def test_a_taken_over_node_id_starts_above_the_previous_holders_fence(
    pool: asyncpg.Pool,
) -> None:
    # Node 0 was held by a replica whose clock ran 5 s ahead; its lease expired.
    fence = wall_clock_ms() + 5_000
    await pool.execute(
        "INSERT INTO bugless_leases (name, holder, expires_at, fence_ms) "
        "VALUES ('node:0', 'gone', now() - INTERVAL '1 second', $1) "
        "ON CONFLICT (name) DO UPDATE SET holder = 'gone', "
        "expires_at = now() - INTERVAL '1 second', fence_ms = $1",
        fence,
    )
    lease = NodeLease(pool, max_node_id=0)
    await lease.start()
    try:
        assert lease.node_id == 0
        assert lease.generator is not None
        lease.generator._max_wait = 10_000  # wait for the clock rather than refuse
        issue_id = await lease.generator.next_id()
        assert decompose(issue_id)[0] > fence
    finally:
        await lease.stop()


async def test_a_node_id_held_by_a_live_replica_is_not_taken(pool: asyncpg.Pool) -> None:
    await pool.execute("DELETE FROM bugless_leases WHERE name = 'node:0'")
    holder = NodeLease(pool, max_node_id=0)
    await holder.start()
    try:
        with pytest.raises(Unavailable, match="no Snowflake node id is free"):
            await NodeLease(pool, max_node_id=0)._take()
    finally:
        await holder.stop()
    # Given back: the next replica gets it at once.
    successor = NodeLease(pool, max_node_id=0)
    await successor.start()
    assert successor.node_id == 0
    await successor.stop()


async def test_a_lost_node_lease_is_noticed_on_renewal(pool: asyncpg.Pool) -> None:
    lease = NodeLease(pool, max_node_id=1023)
    await lease.start()
    try:
        await pool.execute("UPDATE bugless_leases SET holder = 'thief' WHERE name = $1", lease.name)
        assert await lease._renew() is None
    finally:
        await lease.stop()
