"""Per-identity rate limiting: it trips, says when to retry, and recovers."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator

import pytest
from api_support import Bots, ConnectAs, api_settings
from grpclib.events import RecvTrailingMetadata, listen
from prometheus_client import CollectorRegistry

from bugless_api._ratelimit import RateLimiter
from bugless_api.client import RetryPolicy
from bugless_api.server import RunningApi, start_api
from bugless_api.settings import RateLimitSettings
from bugless_core.errors import ResourceExhausted

RATE = 4.0
BURST = 3
#: The tripping test's rate: a token per 2 s, so its burst and the refused
#: call fit before the next token on a loaded machine too (at RATE, a token
#: came back after 0.25 s, and the call meant to be refused got it).
SLOW_RATE = 0.5


@contextlib.asynccontextmanager
async def _limited(bots: Bots, rate: float) -> AsyncIterator[RunningApi]:
    settings = api_settings(bots.stack, rate_limit=RateLimitSettings(rate=rate, burst=BURST))
    running = await start_api(settings, metrics_registry=CollectorRegistry())
    try:
        yield running
    finally:
        await running.close()


@pytest.fixture(scope="module")
async def limited_api(bots: Bots) -> AsyncIterator[RunningApi]:
    async with _limited(bots, RATE) as running:
        yield running


@pytest.fixture(scope="module")
async def slowly_refilled_api(bots: Bots) -> AsyncIterator[RunningApi]:
    async with _limited(bots, SLOW_RATE) as running:
        yield running


async def test_rate_limit_trips_with_retry_after_and_recovers(
    slowly_refilled_api: RunningApi, connect_as: ConnectAs
) -> None:
    greedy = connect_as("greedy", port=slowly_refilled_api.port)
    trailers: list[dict[str, str]] = []

    async def record(event: RecvTrailingMetadata) -> None:
        trailers.append({str(k): str(v) for k, v in event.metadata.items()})

    listen(greedy.channel, RecvTrailingMetadata, record)
    for _ in range(BURST):
        await greedy.whoami()

    with pytest.raises(ResourceExhausted) as caught:
        await greedy.whoami()

    # The trailer is whole seconds (as HTTP's Retry-After); the ErrorInfo is exact.
    retry_after = caught.value.retry_after
    assert retry_after is not None
    assert 0 < retry_after <= 1 / SLOW_RATE + 0.05
    assert trailers[-1]["retry-after"] == str(math.ceil(retry_after))
    assert "rate limit exceeded" in caught.value.message

    await asyncio.sleep(retry_after + 0.02)
    identity = await greedy.whoami()
    assert identity.user is not None
    assert identity.user.username == "greedy"


async def test_limits_are_per_identity(limited_api: RunningApi, connect_as: ConnectAs) -> None:
    greedy, robot = (connect_as(n, port=limited_api.port) for n in ("greedy", "robot"))
    for _ in range(BURST + 1):
        try:
            await greedy.whoami()
        except ResourceExhausted:
            break
    # greedy's empty bucket does not hold robot back.
    await robot.whoami()


async def test_the_client_waits_out_retry_after_by_itself(
    limited_api: RunningApi, connect_as: ConnectAs
) -> None:
    patient = connect_as("outsider", port=limited_api.port, retry=RetryPolicy(attempts=10))
    await asyncio.gather(*(patient.whoami() for _ in range(BURST * 3)))


def test_token_bucket_refills_at_the_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(RateLimitSettings(rate=2.0, burst=2), clock=lambda: now[0])
    limiter.take("a")
    limiter.take("a")
    with pytest.raises(ResourceExhausted) as caught:
        limiter.take("a")
    assert caught.value.retry_after == pytest.approx(0.5)
    now[0] = 0.5
    limiter.take("a")
    now[0] = 100.0
    limiter.take("a")
    limiter.take("a")
    with pytest.raises(ResourceExhausted):
        limiter.take("a")
