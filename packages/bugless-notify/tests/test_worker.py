"""The delivery worker end to end: real PostgreSQL, a real SMTP server, a real HTTP receiver."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any, Self

import asyncpg
import pytest
from delivery_worker_support import (
    _async,
    _count,
    _count_is,
    _email,
    _running,
    _settings,
    _until,
)
from notify_support import SECRET, WebhookReceiver, mail_delivery, webhook_delivery
from prometheus_client import CollectorRegistry

from bugless_core.notification_channel import DeliveryResult, Notification, NotificationChannel
from bugless_notify.endpoints import WebhookEndpointStore
from bugless_notify.queue import DeliveryQueue, DeliveryState
from bugless_notify.retry import RetryPolicy
from bugless_notify.webhook import WebhookChannel, WebhookEndpoint, WebhookSettings
from bugless_notify.worker import DeliveryWorker, WorkerSettings
from bugless_testing.ports import refused_port
from bugless_testing.smtp import SmtpSink


async def _state(pool: asyncpg.Pool, queue: DeliveryQueue, key: str) -> DeliveryState | None:
    async with pool.acquire() as conn:
        record = await queue.get(conn, key)
    return record.state if record else None


def _delivered(registry: CollectorRegistry, channel: str) -> float:
    value = registry.get_sample_value(
        "bugless_notify_deliveries_total", {"channel": channel, "outcome": "delivered"}
    )
    return value or 0.0


async def test_queued_mails_are_delivered_once_each_and_counted(
    pool: asyncpg.Pool, queue: DeliveryQueue, smtp_sink: SmtpSink
) -> None:
    async with pool.acquire() as conn:
        await queue.enqueue(conn, [mail_delivery(n) for n in range(30)])
    registry = CollectorRegistry()
    async with _running(pool, queue, {"email": _email(smtp_sink)}, _settings(), registry):
        mails = await smtp_sink.wait_for_async(30)
        await _until(
            lambda: _count_is(pool, queue, DeliveryState.DELIVERED, 30), "30 marked delivered"
        )
    assert sorted(m.recipients[0] for m in mails) == sorted(
        f"user{n}@example.com" for n in range(30)
    )
    assert len({m.message["Message-ID"] for m in mails}) == 30
    assert _delivered(registry, "email") == 30
    email = {"channel": "email"}
    assert registry.get_sample_value("bugless_notify_attempt_seconds_count", email) == 30
    assert registry.get_sample_value("bugless_notify_in_flight") == 0


async def test_a_webhook_that_fails_three_times_then_succeeds_gets_the_delivery_once(
    pool: asyncpg.Pool,
    queue: DeliveryQueue,
    endpoints: WebhookEndpointStore,
    receiver: WebhookReceiver,
) -> None:
    async with pool.acquire() as conn:
        await endpoints.put(conn, WebhookEndpoint("flaky", receiver.url("/flaky"), SECRET))
        await queue.enqueue(conn, [webhook_delivery("change-9-2/webhook/flaky", "flaky")])
    receiver.script("/flaky", 503, 500, 429)
    channels = {"webhook": WebhookChannel(WebhookSettings(timeout_seconds=2.0), endpoints)}
    async with _running(pool, queue, channels, _settings()):
        await _until(
            lambda: _state_is(pool, queue, "change-9-2/webhook/flaky", DeliveryState.DELIVERED),
            "the webhook delivered",
        )
    requests = receiver.received("/flaky")
    assert [r.status for r in requests] == [503, 500, 429, 200]
    assert {r.delivery_id for r in requests} == {"change-9-2/webhook/flaky"}
    assert all(r.signature_ok for r in requests)
    assert len({r.body for r in requests}) == 1  # the same signed body every time
    async with pool.acquire() as conn:
        record = await queue.get(conn, "change-9-2/webhook/flaky")
    assert record is not None
    assert record.attempts == 4


async def _state_is(
    pool: asyncpg.Pool, queue: DeliveryQueue, key: str, expected: DeliveryState
) -> bool:
    return await _state(pool, queue, key) is expected


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections for the whole test, and nobody else takes."""
    with refused_port() as port:
        yield port


async def test_bad_endpoints_and_refused_mail_never_hold_up_the_others(
    pool: asyncpg.Pool,
    queue: DeliveryQueue,
    endpoints: WebhookEndpointStore,
    receiver: WebhookReceiver,
    smtp_sink: SmtpSink,
    *,
    closed_port: int,
) -> None:
    receiver.hangs["/hang"] = 60.0
    receiver.script("/gone", 404)
    smtp_sink.refusals["ghost@example.com"] = "550 5.1.1 no such user"
    bad = [
        webhook_delivery("hang-1", "hanging"),
        webhook_delivery("hang-2", "hanging"),
        webhook_delivery("refused", "unreachable"),
        webhook_delivery("gone", "gone"),
        mail_delivery(999, recipient="ghost@example.com"),
    ]
    async with pool.acquire() as conn:
        await endpoints.put(conn, WebhookEndpoint("hanging", receiver.url("/hang"), SECRET))
        await endpoints.put(conn, WebhookEndpoint("gone", receiver.url("/gone"), SECRET))
        await endpoints.put(
            conn, WebhookEndpoint("unreachable", f"http://127.0.0.1:{closed_port}/h", SECRET)
        )
        await queue.enqueue(conn, bad)  # queued first, so claimed first
        await queue.enqueue(conn, [mail_delivery(n) for n in range(30)])
    channels = {
        "email": _email(smtp_sink),
        "webhook": WebhookChannel(WebhookSettings(timeout_seconds=1.0), endpoints),
    }
    # Three slots, two of them taken by receivers that never answer.
    settings = _settings(
        concurrency=3,
        delivery_timeout_seconds=5.0,
        retry=RetryPolicy(base_seconds=30.0, max_seconds=60.0, max_attempts=3),
        stop_grace_seconds=0.0,
    )
    registry = CollectorRegistry()
    async with _running(pool, queue, channels, settings, registry):
        mails = await smtp_sink.wait_for_async(30)
        await _until(
            lambda: _count_is(pool, queue, DeliveryState.DELIVERED, 30), "good mails recorded"
        )
        await _until(lambda: _count_is(pool, queue, DeliveryState.DEAD, 2), "two dead letters")
        async with pool.acquire() as conn:
            dead = {r.delivery_id: r for r in (await queue.list_dead(conn)).records}
            hanging = await queue.get(conn, "hang-1")
            refused = await queue.get(conn, "refused")
    assert {m.recipients[0] for m in mails} == {f"user{n}@example.com" for n in range(30)}
    ghost_key = mail_delivery(999, recipient="ghost@example.com").delivery_id
    assert set(dead) == {"gone", ghost_key}
    assert "HTTP 404" in dead["gone"].last_error
    assert "550 5.1.1 no such user" in dead[ghost_key].last_error
    # The unreachable and silent receivers wait out their backoff in the queue.
    assert hanging is not None
    assert hanging.state is DeliveryState.PENDING
    assert refused is not None
    assert refused.state is DeliveryState.PENDING
    assert "cannot reach webhook endpoint 'unreachable'" in refused.last_error
    outcomes = {
        (channel, outcome): registry.get_sample_value(
            "bugless_notify_deliveries_total", {"channel": channel, "outcome": outcome}
        )
        for channel in ("email", "webhook")
        for outcome in ("delivered", "dead")
    }
    assert outcomes == {
        ("email", "delivered"): 30,
        ("email", "dead"): 1,
        ("webhook", "delivered"): None,
        ("webhook", "dead"): 1,
    }
    assert {
        channel: registry.get_sample_value(
            "bugless_notify_dead_letters_total", {"channel": channel, "reason": "rejected"}
        )
        for channel in ("email", "webhook")
    } == {"email": 1, "webhook": 1}


async def test_exhausted_retries_become_a_dead_letter_that_an_admin_can_requeue(
    pool: asyncpg.Pool,
    queue: DeliveryQueue,
    endpoints: WebhookEndpointStore,
    receiver: WebhookReceiver,
    closed_port: int,
) -> None:
    async with pool.acquire() as conn:
        await endpoints.put(
            conn, WebhookEndpoint("ops", f"http://127.0.0.1:{closed_port}/h", SECRET)
        )
        await queue.enqueue(conn, [webhook_delivery("change-5-3/webhook/ops", "ops")])
    channels = {"webhook": WebhookChannel(WebhookSettings(timeout_seconds=1.0), endpoints)}
    policy = RetryPolicy(base_seconds=0.05, max_seconds=0.1, max_attempts=3)
    async with _running(pool, queue, channels, _settings(retry=policy)):
        await _until(
            lambda: _state_is(pool, queue, "change-5-3/webhook/ops", DeliveryState.DEAD),
            "a dead letter",
        )
        async with pool.acquire() as conn:
            (record,) = (await queue.list_dead(conn)).records
            assert record.attempts == 3
            assert record.last_error.startswith("gave up after 3 attempts; the last: cannot reach")
            # The admin fixes the endpoint and requeues the dead letter.
            await endpoints.put(conn, WebhookEndpoint("ops", receiver.url("/fixed"), SECRET))
            assert await queue.requeue(conn, [record.delivery_id]) == 1
        await _until(
            lambda: _state_is(pool, queue, "change-5-3/webhook/ops", DeliveryState.DELIVERED),
            "delivered after the requeue",
        )
    assert [r.delivery_id for r in receiver.received("/fixed")] == ["change-5-3/webhook/ops"]


async def test_two_workers_on_one_queue_deliver_each_mail_once(
    notify_database: str, queue: DeliveryQueue
) -> None:
    with SmtpSink(data_delay_seconds=0.005) as sink:
        pools = [
            await asyncpg.create_pool(notify_database, min_size=2, max_size=6) for _ in range(2)
        ]
        async with pools[0].acquire() as conn:
            await queue.enqueue(conn, [mail_delivery(n) for n in range(200)])
        registries = [CollectorRegistry(), CollectorRegistry()]
        try:
            async with contextlib.AsyncExitStack() as stack:
                for pool, registry, name in zip(pools, registries, ("a", "b"), strict=True):
                    await stack.enter_async_context(
                        _running(
                            pool,
                            queue,
                            {"email": _email(sink)},
                            _settings(worker_id=name),
                            registry,
                        )
                    )
                mails = await sink.wait_for_async(200, 60)
                await _until(
                    lambda: _count_is(pools[0], queue, DeliveryState.DELIVERED, 200),
                    "200 marked delivered",
                )
            await asyncio.sleep(0.3)  # a duplicate would have arrived by now
            mails = sink.mails
        finally:
            for pool in pools:
                await pool.close()
    ids = Counter(m.message["Message-ID"] for m in mails)
    assert len(ids) == 200
    assert set(ids.values()) == {1}
    shares = [_delivered(r, "email") for r in registries]
    assert sum(shares) == 200
    assert all(share > 0 for share in shares), shares


async def test_a_graceful_stop_lets_attempts_in_flight_finish(
    pool: asyncpg.Pool, queue: DeliveryQueue
) -> None:
    with SmtpSink(data_delay_seconds=1.0) as sink:
        async with pool.acquire() as conn:
            await queue.enqueue(conn, [mail_delivery(n) for n in range(4)])
        worker = DeliveryWorker(
            pool, queue, {"email": _email(sink)}, _settings(), metrics_registry=CollectorRegistry()
        )
        task = asyncio.create_task(worker.run())
        await _until(_async(lambda: worker.in_flight == 4), "four attempts in flight")
        worker.stop()
        await asyncio.wait_for(task, 30)
        assert sink.count == 4
    assert await _count(pool, queue, DeliveryState.DELIVERED) == 4


async def test_attempts_still_running_after_the_grace_are_given_back_uncounted(
    pool: asyncpg.Pool, queue: DeliveryQueue
) -> None:
    with SmtpSink(data_delay_seconds=30.0) as sink:
        async with pool.acquire() as conn:
            await queue.enqueue(conn, [mail_delivery(n) for n in range(3)])
        registry = CollectorRegistry()
        worker = DeliveryWorker(
            pool,
            queue,
            {"email": _email(sink)},
            _settings(stop_grace_seconds=0.2),
            metrics_registry=registry,
        )
        task = asyncio.create_task(worker.run())
        await _until(_async(lambda: worker.in_flight == 3), "three attempts in flight")
        worker.stop()
        await asyncio.wait_for(task, 30)
    async with pool.acquire() as conn:
        records = [await queue.get(conn, mail_delivery(n).delivery_id) for n in range(3)]
    for record in records:
        assert record is not None
        assert record.state is DeliveryState.PENDING
        assert record.claimed_by is None
        assert record.attempts == 0
    assert registry.get_sample_value("bugless_notify_released_total") == 3


async def test_an_enqueue_wakes_an_idle_worker_without_waiting_for_the_poll(
    pool: asyncpg.Pool, queue: DeliveryQueue, smtp_sink: SmtpSink
) -> None:
    async with _running(pool, queue, {"email": _email(smtp_sink)}, _settings(poll_seconds=300)):
        await asyncio.sleep(0.5)  # the worker has found nothing and sleeps
        async with pool.acquire() as conn:
            await queue.enqueue(conn, [mail_delivery(1)])
        # Without the LISTEN/NOTIFY wake-up this would take the 300 s poll.
        (mail,) = await smtp_sink.wait_for_async(1, 20)
    assert mail.recipients == ("user1@example.com",)


class _Flaky(NotificationChannel):
    """A channel plugin that raises on its first attempt and hangs on its second."""

    name = "flaky"

    def __init__(self) -> None:
        self.calls: list[int] = []

    @classmethod
    async def open(cls, config: Mapping[str, Any]) -> Self:
        return cls()

    async def deliver(self, notification: Notification) -> DeliveryResult:
        self.calls.append(notification.attempt)
        if notification.attempt == 1:
            raise RuntimeError("the plugin has a bug")
        if notification.attempt == 2:
            await asyncio.sleep(60)
        return DeliveryResult.delivered()


async def test_a_channel_that_raises_or_hangs_is_retried_with_the_reason_kept(
    pool: asyncpg.Pool, queue: DeliveryQueue
) -> None:
    flaky = _Flaky()
    new = mail_delivery(1)
    async with pool.acquire() as conn:
        await queue.enqueue(conn, [type(new)(new.delivery_id, "flaky", "x", new.message)])
    errors: list[str] = []

    async def watch_errors() -> bool:
        async with pool.acquire() as conn:
            record = await queue.get(conn, new.delivery_id)
        assert record is not None
        if record.last_error and record.last_error not in errors:
            errors.append(record.last_error)
        return record.state is DeliveryState.DELIVERED

    async with _running(
        pool, queue, {"flaky": flaky}, _settings(delivery_timeout_seconds=0.5, lease_seconds=5)
    ):
        await _until(watch_errors, "delivered on the third attempt")
    assert flaky.calls == [1, 2, 3]
    assert errors == [
        "RuntimeError: the plugin has a bug",
        "the flaky channel took longer than the attempt's 0.5 s",
    ]


async def test_a_delivery_whose_worker_died_on_its_last_attempt_becomes_a_dead_letter(
    pool: asyncpg.Pool, queue: DeliveryQueue, smtp_sink: SmtpSink
) -> None:
    async with pool.acquire() as conn:
        await queue.enqueue(conn, [mail_delivery(1)])
        await queue.claim(conn, worker_id="crashed", channels=["email"], limit=1, lease_seconds=0.1)
    await asyncio.sleep(0.2)
    settings = _settings(retry=RetryPolicy(base_seconds=1, max_seconds=1, max_attempts=1))
    registry = CollectorRegistry()
    async with _running(pool, queue, {"email": _email(smtp_sink)}, settings, registry):
        await _until(lambda: _count_is(pool, queue, DeliveryState.DEAD, 1), "a dead letter")
    async with pool.acquire() as conn:
        (record,) = (await queue.list_dead(conn)).records
    assert "attempt 1 of 1 never finished" in record.last_error
    assert smtp_sink.count == 0
    dead = {"channel": "email", "reason": "gave_up"}
    assert registry.get_sample_value("bugless_notify_dead_letters_total", dead) == 1


async def test_a_worker_leaves_deliveries_of_channels_it_does_not_have(
    pool: asyncpg.Pool, queue: DeliveryQueue, smtp_sink: SmtpSink
) -> None:
    async with pool.acquire() as conn:
        await queue.enqueue(
            conn, [mail_delivery(1), webhook_delivery("change-1-2/webhook/ops", "ops")]
        )
    async with _running(pool, queue, {"email": _email(smtp_sink)}, _settings()):
        await smtp_sink.wait_for_async(1)
        await _until(lambda: _count_is(pool, queue, DeliveryState.DELIVERED, 1), "mail recorded")
    async with pool.acquire() as conn:
        record = await queue.get(conn, "change-1-2/webhook/ops")
    assert record is not None
    assert record.state is DeliveryState.PENDING
    assert record.attempts == 0


async def test_a_lost_database_connection_is_reopened_and_delivery_resumes(
    notify_database: str, queue: DeliveryQueue, smtp_sink: SmtpSink
) -> None:
    name = f"notify-{queue.schema}"
    pool = await asyncpg.create_pool(
        notify_database, min_size=2, max_size=4, server_settings={"application_name": name}
    )
    try:
        registry = CollectorRegistry()
        async with _running(pool, queue, {"email": _email(smtp_sink)}, _settings(), registry):
            async with pool.acquire() as conn:
                await queue.enqueue(conn, [mail_delivery(1)])
            await smtp_sink.wait_for_async(1)
            admin = await asyncpg.connect(notify_database)
            try:
                killed = await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = $1",
                    name,
                )
                assert killed >= 1
                await asyncio.sleep(1.0)
                await queue.enqueue(admin, [mail_delivery(n) for n in range(2, 12)])
            finally:
                await admin.close()
            mails = await smtp_sink.wait_for_async(11)
            await _until(lambda: _count_is(pool, queue, DeliveryState.DELIVERED, 11), "11 recorded")
    finally:
        await pool.close()
    assert len({m.message["Message-ID"] for m in mails}) == 11


async def test_a_connection_lost_while_recording_is_reopened_and_the_record_kept(
    notify_database: str, queue: DeliveryQueue, smtp_sink: SmtpSink
) -> None:
    """The server ends the control connection with a delivery not yet recorded.

    The step must neither claim on the lost connection (it once did, and the
    worker's loop died of an AttributeError) nor forget the delivery: the
    next turn opens a new connection and records it.
    """
    pool = await asyncpg.create_pool(notify_database, min_size=1, max_size=4)
    worker = DeliveryWorker(
        pool, queue, {"email": _email(smtp_sink)}, _settings(), metrics_registry=CollectorRegistry()
    )
    try:
        async with pool.acquire() as conn:
            await queue.enqueue(conn, [mail_delivery(1)])
            [claim] = await queue.claim(
                conn,
                worker_id=worker.settings.worker_id,
                channels=["email"],
                limit=1,
                lease_seconds=300.0,
            )
        assert await worker._ensure_control()
        control = worker._control
        assert control is not None
        worker._to_record.append(claim)  # delivered by an attempt, not recorded yet
        admin = await asyncpg.connect(notify_database)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", control.get_server_pid())
        finally:
            await admin.close()
        await asyncio.sleep(0.5)

        await worker._step()

        assert worker._control is None
        assert worker._to_record == [claim]
        task = asyncio.create_task(worker.run())
        try:
            await _until(lambda: _count_is(pool, queue, DeliveryState.DELIVERED, 1), "recorded")
        finally:
            worker.stop()
            await asyncio.wait_for(task, 60)
        assert smtp_sink.count == 0  # recorded as it was, never sent again
    finally:
        await pool.close()


def test_worker_settings_that_would_deliver_twice_are_refused() -> None:
    import pytest

    with pytest.raises(ValueError, match=r"lease_seconds: 10\.0 must be longer than"):
        WorkerSettings(lease_seconds=10.0, delivery_timeout_seconds=10.0)
    with pytest.raises(ValueError, match="concurrency"):
        WorkerSettings(concurrency=0)
