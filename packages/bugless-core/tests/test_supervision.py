"""The supervision of background loops: an unexpected error is logged once, counted, retried."""

from __future__ import annotations

import asyncio
import gc
import logging
import urllib.request
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from bugless_core.backoff import Backoff
from bugless_core.metrics_endpoint import MetricsEndpoint
from bugless_core.supervision import OutageLog, SupervisedLoop

#: Retries without a wait worth the name: the tests count rounds, never time.
QUICK = Backoff(first_seconds=0.001, max_seconds=0.001)


@pytest.fixture
async def endpoint() -> AsyncIterator[MetricsEndpoint]:
    """A real ``/metrics`` endpoint on a registry of the test's own."""
    served = MetricsEndpoint(CollectorRegistry())
    await served.start("127.0.0.1", 0)
    yield served
    await served.stop()


async def scrape(endpoint: MetricsEndpoint) -> dict[tuple[str, str], float]:
    """``(sample name, loop label) -> value`` as a Prometheus scrape of ``endpoint`` reads it."""
    url = f"http://127.0.0.1:{endpoint.port}/metrics"
    with await asyncio.to_thread(urllib.request.urlopen, url, timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, sample.labels.get("loop", "")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def failures_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "bugless.supervision"]


async def test_a_loop_whose_round_raises_unexpectedly_runs_its_next_rounds(
    endpoint: MetricsEndpoint, caplog: pytest.LogCaptureFixture
) -> None:
    supervised = SupervisedLoop("test.rounds", backoff=QUICK, registry=endpoint.registry)
    stop = asyncio.Event()
    rounds: list[int] = []

    async def body() -> None:
        while True:
            rounds.append(len(rounds) + 1)
            if len(rounds) == 2:
                raise KeyError("a bug in round 2")
            supervised.succeeded()
            if len(rounds) == 4:
                stop.set()
                return
            await asyncio.sleep(0)

    with caplog.at_level(logging.DEBUG, logger="bugless.supervision"):
        await asyncio.wait_for(supervised.run(body, stop=stop), 10)

    assert rounds == [1, 2, 3, 4]
    [record] = failures_logged(caplog)
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert record.exc_info[0] is KeyError
    assert "test.rounds" in record.getMessage()
    samples = await scrape(endpoint)
    assert samples["bugless_background_failures_total", "test.rounds"] == 1
    assert samples["bugless_background_consecutive_failures", "test.rounds"] == 0
    assert isinstance(supervised.last_failure, KeyError)


async def test_a_loop_that_keeps_failing_keeps_being_retried_and_shows_its_streak(
    endpoint: MetricsEndpoint, caplog: pytest.LogCaptureFixture
) -> None:
    supervised = SupervisedLoop("test.broken", backoff=QUICK, registry=endpoint.registry)
    stop = asyncio.Event()
    calls = 0

    async def body() -> None:
        nonlocal calls
        calls += 1
        if calls == 5:
            stop.set()
        raise RuntimeError(f"still broken ({calls})")

    with caplog.at_level(logging.DEBUG, logger="bugless.supervision"):
        await asyncio.wait_for(supervised.run(body, stop=stop), 10)

    assert calls == 5
    assert len(failures_logged(caplog)) == 5  # once per failure, never more
    samples = await scrape(endpoint)
    assert samples["bugless_background_failures_total", "test.broken"] == 5
    assert samples["bugless_background_consecutive_failures", "test.broken"] == 5
    assert supervised.consecutive_failures == 5


async def test_cancelling_a_supervised_loop_ends_it_without_a_log_line(
    endpoint: MetricsEndpoint, caplog: pytest.LogCaptureFixture
) -> None:
    supervised = SupervisedLoop("test.cancelled", backoff=QUICK, registry=endpoint.registry)
    started = asyncio.Event()

    async def body() -> None:
        started.set()
        await asyncio.Event().wait()

    with caplog.at_level(logging.DEBUG):
        task = asyncio.create_task(supervised.run(body))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    assert caplog.records == []
    assert (await scrape(endpoint))["bugless_background_failures_total", "test.cancelled"] == 0


async def test_a_stop_request_ends_the_backoff_wait_at_once(endpoint: MetricsEndpoint) -> None:
    """A stopping service does not wait out a long backoff (nor restart the loop)."""
    supervised = SupervisedLoop(
        "test.stopping",
        backoff=Backoff(first_seconds=3600, max_seconds=3600),
        registry=endpoint.registry,
    )
    stop = asyncio.Event()
    calls = 0

    async def body() -> None:
        nonlocal calls
        calls += 1
        stop.set()
        raise ValueError("fails once, then the service stops")

    await asyncio.wait_for(supervised.run(body, stop=stop), 10)
    assert calls == 1


def test_a_supervised_loop_waits_the_backoff_of_its_streak() -> None:
    supervised = SupervisedLoop(
        "test.delays",
        backoff=Backoff(first_seconds=0.5, max_seconds=4.0, jitter=0.0),
        registry=CollectorRegistry(),
    )
    error = OSError("the database is away")
    delays = [supervised.failed(error) for _ in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    supervised.succeeded()
    assert supervised.failed(error) == 0.5  # a new streak starts from the first delay


def test_a_loop_with_an_interval_waits_the_longer_of_it_and_the_backoff() -> None:
    supervised = SupervisedLoop(
        "test.interval",
        backoff=Backoff(first_seconds=0.5, max_seconds=4.0, jitter=0.0),
        registry=CollectorRegistry(),
    )
    error = OSError("the database is away")
    delays = [supervised.failed(error, at_least=1.5) for _ in range(5)]
    assert delays == [1.5, 1.5, 2.0, 4.0, 4.0]


def test_a_loop_never_retries_sooner_than_half_its_backoff_by_default() -> None:
    draws = iter([0.0, 0.999, 0.5, 0.999])
    supervised = SupervisedLoop(
        "test.floor", registry=CollectorRegistry(), draw=lambda: next(draws)
    )
    delays = [supervised.failed(ValueError("a bug")) for _ in range(4)]
    assert delays == pytest.approx([1.0, 1.001, 3.0, 4.004])


def test_the_outage_gauge_says_how_long_the_current_outage_has_lasted() -> None:
    registry = CollectorRegistry()
    now = [100.0]
    loop = SupervisedLoop(
        "gauged", registry=registry, outage=OutageLog("gauged", clock=lambda: now[0])
    )

    def gauge() -> float | None:
        labels = {"loop": "gauged"}
        return registry.get_sample_value("bugless_background_outage_seconds", labels)

    assert gauge() == 0.0
    loop.unavailable("the database is away")
    now[0] += 42.5
    assert gauge() == 42.5  # read at scrape time, no round needed
    loop.succeeded()
    assert gauge() == 0.0
    loop.unavailable("away again")
    now[0] += 7.0
    assert gauge() == 7.0
    del loop  # a loop that is gone (a lease's renewal ended) is not an outage for ever
    gc.collect()
    assert gauge() == 0.0
