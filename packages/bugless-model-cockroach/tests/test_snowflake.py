"""Snowflake ids: unique, time-ordered, and safe when the clock misbehaves."""

from __future__ import annotations

import asyncio

import pytest

from bugless_core.errors import Unavailable
from bugless_model_cockroach._snowflake import (
    BUGLESS_EPOCH_MS,
    MAX_SEQUENCE,
    SnowflakeGenerator,
    compose,
    decompose,
)

T0 = BUGLESS_EPOCH_MS + 1_000_000_000


class FakeClock:
    """A clock the test moves; sleeping moves it forward by the slept time."""

    def __init__(self, now: int = T0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> int:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += max(1, round(seconds * 1000))
        await asyncio.sleep(0)


def generator(clock: FakeClock, node_id: int = 1, **kwargs: int) -> SnowflakeGenerator:
    return SnowflakeGenerator(node_id, clock=clock, sleep=clock.sleep, **kwargs)


def test_an_id_carries_its_millisecond_node_and_sequence() -> None:
    issue_id = compose(T0, 1023, 4095)
    assert decompose(issue_id) == (T0, 1023, 4095)
    assert 0 < issue_id < 2**63


async def test_one_generator_issues_increasing_ids_past_a_full_millisecond() -> None:
    clock = FakeClock()
    gen = generator(clock)
    ids = [await gen.next_id() for _ in range(3 * (MAX_SEQUENCE + 1))]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    # 4096 ids per millisecond: the 4097th waited for the next one.
    assert clock.slept
    assert decompose(ids[-1])[0] > T0


async def test_many_concurrent_generators_never_collide_and_sort_by_time() -> None:
    generators = [SnowflakeGenerator(node) for node in range(16)]

    async def mint(gen: SnowflakeGenerator) -> list[tuple[int, int]]:
        out = []
        for _ in range(300):
            out.append((await gen.next_id(), gen.node_id))
            await asyncio.sleep(0)
        return out

    minted = [i for batch in await asyncio.gather(*map(mint, generators)) for i in batch]
    ids = [i for i, _ in minted]
    assert len(set(ids)) == len(ids)
    for issue_id, node in minted:
        assert decompose(issue_id)[1] == node
    # Ids of later milliseconds are larger, whichever node minted them.
    by_ms = sorted(ids, key=lambda i: decompose(i)[0])
    assert [decompose(i)[0] for i in sorted(ids)] == [decompose(i)[0] for i in by_ms]


async def test_a_clock_slightly_behind_is_waited_for() -> None:
    clock = FakeClock()
    gen = generator(clock)
    first = await gen.next_id()
    clock.now -= 500  # NTP stepped the clock back half a second
    second = await gen.next_id()
    assert second > first
    assert sum(clock.slept) == pytest.approx(0.5)


async def test_a_clock_far_behind_is_refused_not_slept_through() -> None:
    clock = FakeClock()
    gen = generator(clock, max_backwards_wait_ms=2_000)
    await gen.next_id()
    clock.now -= 60_000
    with pytest.raises(Unavailable, match="clock is 60000 ms behind"):
        await gen.next_id()
    clock.now += 60_000
    assert await gen.next_id() > 0


async def test_ids_start_above_the_previous_holders_fence() -> None:
    clock = FakeClock()
    gen = generator(clock, floor_ms=T0 + 300)
    issue_id = await gen.next_id()
    assert decompose(issue_id)[0] > T0 + 300


async def test_no_id_is_issued_past_our_own_fence() -> None:
    clock = FakeClock()
    gen = generator(clock, until_ms=T0 + 10)
    await gen.next_id()
    clock.now += 11
    with pytest.raises(Unavailable, match="lease on node id 1 was not renewed"):
        await gen.next_id()
    gen.extend(T0 + 1_000)
    assert await gen.next_id() > 0
