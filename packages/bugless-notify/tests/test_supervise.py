"""The notifier's loops under supervision, on a real gRPC server over a loopback socket."""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest
from delivery_worker_support import _async, _count_is, _email, _running, _settings, _until
from grpclib.client import Channel
from notify_support import mail_delivery
from prometheus_client import REGISTRY, CollectorRegistry

from bugless_core.clients import ServiceAddress
from bugless_core.grpc import GrpcServerSettings, GrpcServiceRunner
from bugless_dev.processes import check_grpc_health
from bugless_notify._supervise import LoopEnded, serve_supervised
from bugless_notify.consumer import ConsumerOptions, FeedConsumer
from bugless_notify.digest import DigestSender, DigestStore
from bugless_notify.queue import DeliveryQueue, DeliveryState
from bugless_proto import v1
from bugless_testing.smtp import SmtpSink


class _Unimplemented(v1.NotifierBase):
    """The Notifier service with no method implemented: the server needs one service."""


async def _runner() -> GrpcServiceRunner:
    settings = GrpcServerSettings(
        host="127.0.0.1", port=0, insecure_local=True, drain_seconds=0.2, grace_seconds=1.0
    )
    runner = GrpcServiceRunner(
        [_Unimplemented()], settings, name="notify", metrics_registry=CollectorRegistry()
    )
    await runner.start()
    return runner


async def _forever() -> None:
    await asyncio.Event().wait()


@pytest.mark.parametrize("failure", [RuntimeError("lost its connection"), None])
async def test_a_loop_that_ends_on_its_own_drains_the_server_and_raises(
    failure: Exception | None,
) -> None:
    runner = await _runner()
    address = ServiceAddress("127.0.0.1", runner.port)
    release = asyncio.Event()

    async def breaks() -> None:
        await release.wait()
        if failure is not None:
            raise failure

    others = asyncio.ensure_future(_forever())
    broken = asyncio.ensure_future(breaks())
    serving = asyncio.ensure_future(
        serve_supervised(runner, {"delivery worker": broken, "digests": others})
    )
    try:
        assert await check_grpc_health(address, "") == "SERVING"
        release.set()
        with pytest.raises(LoopEnded, match="delivery worker stopped on its own") as raised:
            await asyncio.wait_for(serving, 30)
        assert raised.value.__cause__ is failure
        # Drained and closed: nothing answers on the port any more.
        assert await check_grpc_health(address, "", within_seconds=1.0) is None
        assert not others.done()  # the caller stops the other loops (RunningNotifier.close)
    finally:
        others.cancel()
        serving.cancel()
        await runner.close()


class _BuggyOnce(DeliveryQueue):
    """The real queue, with a bug in the loop's path the first time (a row it cannot
    read used to be one; it is a dead letter now, see test_dead_letters)."""

    failed = False

    async def seconds_until_due(self, conn: Any, channels: Sequence[str]) -> float | None:
        if not self.failed:
            self.failed = True
            raise KeyError("a bug")
        return await super().seconds_until_due(conn, channels)


async def test_a_bug_in_the_loop_is_logged_once_and_the_mails_are_delivered(
    pool: asyncpg.Pool,
    queue: DeliveryQueue,
    smtp_sink: SmtpSink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An unexpected error in the loop no longer ends the worker."""
    buggy = _BuggyOnce(queue.schema)
    registry = CollectorRegistry()
    labels = {"loop": "notify.delivery_worker"}

    def failures() -> float:
        return registry.get_sample_value("bugless_background_failures_total", labels) or 0.0

    with caplog.at_level(logging.ERROR, logger="bugless.supervision"):
        async with _running(
            pool, buggy, {"email": _email(smtp_sink)}, _settings(), registry
        ) as worker:
            await _until(_async(lambda: failures() == 1), "the bug fails a round")
            async with pool.acquire() as conn:
                await buggy.enqueue(conn, [mail_delivery(n) for n in range(901, 904)])
            mails = await smtp_sink.wait_for_async(3)
            await _until(
                lambda: _count_is(pool, queue, DeliveryState.DELIVERED, 3), "3 marked delivered"
            )
            assert worker.supervised.consecutive_failures == 0

    assert sorted(m.recipients[0] for m in mails) == [
        f"user{n}@example.com" for n in (901, 902, 903)
    ]
    [logged] = [r for r in caplog.records if r.name == "bugless.supervision"]
    assert logged.exc_info is not None
    assert logged.exc_info[0] is KeyError
    assert failures() == 1
    assert registry.get_sample_value("bugless_background_consecutive_failures", labels) == 0


class _BuggyDigests(DigestStore):
    """The real store, with a bug where the digests are sent."""

    async def send(self, pool: asyncpg.Pool, queue: DeliveryQueue, cut: datetime.datetime) -> int:
        raise KeyError("a bug")


class _BuggyConsumer(FeedConsumer):
    """The real consumer, with a bug where it reads its cursor."""

    async def ensure_cursor(self) -> int:
        raise KeyError("a bug")


async def test_the_consumer_and_the_digests_count_their_bugs_in_the_registry_they_are_given(
    pool: asyncpg.Pool, queue: DeliveryQueue
) -> None:
    """As the worker does: a test's own registry, the process's left alone."""
    registry = CollectorRegistry()
    loops = ("notify.feed_consumer", "notify.digests")

    def failures(where: CollectorRegistry) -> list[float]:
        return [
            where.get_sample_value("bugless_background_failures_total", {"loop": loop}) or 0.0
            for loop in loops
        ]

    before = failures(REGISTRY)
    nowhere = Channel("127.0.0.1", 9)  # never called: the bug comes first
    consumer = _BuggyConsumer(
        pool,
        queue,
        v1.ModelStub(nowhere),
        v1.AuthenticatorStub(nowhere),
        ConsumerOptions(public_url="https://bugs.example.test", schema=queue.schema),
        metrics_registry=registry,
    )
    digests = DigestSender(
        pool,
        queue,
        _BuggyDigests(queue.schema),
        hour_utc=0,
        interval_seconds=0.01,
        metrics_registry=registry,
    )
    running = [asyncio.ensure_future(consumer.run()), asyncio.ensure_future(digests.run())]
    try:
        await _until(_async(lambda: min(failures(registry)) >= 1), "a bug in each loop")
    finally:
        consumer.stop()
        digests.stop()
        await asyncio.wait_for(asyncio.gather(*running), 30)
        nowhere.close()
    assert failures(REGISTRY) == before
