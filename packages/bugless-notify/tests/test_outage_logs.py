"""An outage under a real notifier is logged when it starts and when it ends, not every round.

The feed consumer retries every second while the Model is away, and the
delivery worker at every poll while its database refuses it; each used to log
a warning per failed round. Here they run for real (the notifier in this
process, so its log records can be counted; a ``bugless model serve`` of its
own, stopped and started again on its port; the notifier's PostgreSQL
refusing the worker's role, then letting it in) and an outage of many rounds
must leave one WARNING when it starts and one INFO when a round works again
(:class:`~bugless_core.supervision.OutageLog`; the rounds between are DEBUG).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import urllib.parse
import urllib.request

import asyncpg
import pytest
from delivery_worker_support import _async, _count_is, _email, _running, _settings, _until
from notify_support import SEALING_KEY, mail_delivery
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from bugless_core.grpc import GrpcServerSettings
from bugless_dev.stack import LocalStack, RunningService
from bugless_notify.queue import DeliveryQueue, DeliveryState
from bugless_notify.service import start_notifier
from bugless_notify.settings import NotifierSettings, SmtpOptions
from bugless_proto import v1
from bugless_testing.smtp import SmtpSink

ADMIN = v1.Caller(user_id="test-admin", admin=True)
#: Failed rounds an outage lasts in these tests (a second each for the consumer).
ROUNDS = 5


def _lines(caplog: pytest.LogCaptureFixture, what: str) -> list[logging.LogRecord]:
    """The records of one loop's outage log (``what`` starts each of its lines)."""
    return [
        r
        for r in caplog.records
        if r.name == "bugless.notify" and r.getMessage().startswith(f"{what}: ")
    ]


async def _outage_seconds(metrics_port: int | None, loop: str) -> float:
    """``bugless_background_outage_seconds{loop}`` as the notifier's ``/metrics`` serves it now."""
    assert metrics_port is not None
    url = f"http://127.0.0.1:{metrics_port}/metrics"

    def scrape() -> str:
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read().decode())

    for family in text_string_to_metric_families(await asyncio.to_thread(scrape)):
        for sample in family.samples:
            if sample.name == "bugless_background_outage_seconds" and sample.labels == {
                "loop": loop
            }:
                return float(sample.value)
    raise AssertionError(f"no bugless_background_outage_seconds for {loop!r} on {url}")


def _own_model(stack: LocalStack, port: int, name: str) -> RunningService:
    """A Model replica on the stack's database, on ``port`` (0: any)."""
    return stack.start("model", ["model", "serve", "--port", str(port)], name=name)


async def test_a_model_outage_of_many_rounds_is_one_warning_and_its_end_one_info(
    bugless_stack: LocalStack,
    model: v1.ModelStub,
    notify_database: str,
    smtp_sink: SmtpSink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tag = secrets.token_hex(3)
    component = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"outage-{tag}")
    )

    async def change(title: str) -> None:
        """An issue created through the session's Model: a change in the same feed."""
        await model.create_issue(
            v1.CreateIssueRequest(
                caller=ADMIN,
                fields=v1.IssueFields(title=f"{title} {tag}", component_id=component.id),
                idempotency_key=secrets.token_hex(8),
            )
        )

    replica: RunningService | None = await asyncio.to_thread(
        _own_model, bugless_stack, 0, f"model-outage-{tag}"
    )
    try:
        assert replica is not None
        port = replica.port
        settings = NotifierSettings(
            model=dataclasses.replace(bugless_stack.client_address("model", "notify"), port=port),
            auth=bugless_stack.client_address("auth", "notify"),
            database_url=notify_database,
            schema=f"notify_outage_{tag}",
            public_url="https://bugs.example.test",
            secret_keys=(SEALING_KEY,),
            smtp=SmtpOptions(host="127.0.0.1", port=smtp_sink.port, security="none"),
            grpc=GrpcServerSettings(
                insecure_local=True, drain_seconds=0.0, grace_seconds=1.0, metrics_port=0
            ),
        )
        with caplog.at_level(logging.DEBUG, logger="bugless.notify"):
            notifier = await start_notifier(settings, metrics_registry=CollectorRegistry())
            consumer = notifier.consumer
            loop = consumer.supervised.name
            metrics_port = notifier.runner.metrics_port
            try:
                await change("Before the outage")
                await _until(_async(lambda: consumer.handled >= 1), "the first change consumed")
                assert await _outage_seconds(metrics_port, loop) == 0.0

                await asyncio.to_thread(bugless_stack.stop_service, replica)
                replica = None
                outage = consumer.supervised.outage
                await _until(
                    _async(lambda: outage.failed_rounds >= ROUNDS),
                    f"{ROUNDS} rounds without the Model",
                    seconds=60,
                )
                # The gauge an alert reads: how long the outage has lasted so far.
                during = await _outage_seconds(metrics_port, loop)
                assert ROUNDS - 2 <= during <= outage.seconds, (during, outage.seconds)
                replica = await asyncio.to_thread(
                    _own_model, bugless_stack, port, f"model-back-{tag}"
                )
                handled = consumer.handled
                await change("After the outage")
                await _until(_async(lambda: consumer.handled > handled), "a change consumed again")
                assert await _outage_seconds(metrics_port, loop) == 0.0
            finally:
                await notifier.runner.close()
                await notifier.close()
    finally:
        if replica is not None:
            await asyncio.to_thread(bugless_stack.stop_service, replica)

    logged = _lines(caplog, "feed consumer")
    assert len(logged) >= ROUNDS + 1, logged
    assert [r.levelno for r in logged if r.levelno > logging.DEBUG] == [
        logging.WARNING,
        logging.INFO,
    ]
    started = next(r for r in logged if r.levelno == logging.WARNING)
    ended = next(r for r in logged if r.levelno == logging.INFO)
    assert "retrying every second" in started.getMessage()
    assert started.exc_info is None
    assert ended.__dict__["failed_rounds"] >= ROUNDS
    assert "working again after" in ended.getMessage()
    # Nobody else had an outage, and nothing was taken for a bug.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_database_refusing_the_worker_for_many_polls_is_one_warning_and_one_info(
    notify_database: str,
    pool: asyncpg.Pool,
    queue: DeliveryQueue,
    smtp_sink: SmtpSink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    role = f"notify_worker_{secrets.token_hex(3)}"
    registry = CollectorRegistry()
    admin = pool  # a superuser's
    refused: asyncpg.Pool | None = None
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'worker-password'")
        await admin.execute(f"GRANT USAGE ON SCHEMA {queue.schema} TO {role}")
        await admin.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA {queue.schema} TO {role}")
        await admin.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA {queue.schema} TO {role}")
        parts = urllib.parse.urlsplit(notify_database)
        as_role = parts._replace(
            netloc=f"{role}:worker-password@{parts.hostname}:{parts.port}"
        ).geturl()
        refused = await asyncpg.create_pool(as_role, min_size=0, max_size=4)
        settings = _settings(poll_seconds=0.05)
        channels = {"email": _email(smtp_sink)}
        with caplog.at_level(logging.DEBUG, logger="bugless.notify"):
            async with _running(refused, queue, channels, settings, registry) as worker:
                async with admin.acquire() as conn:
                    await queue.enqueue(conn, [mail_delivery(1)])
                await smtp_sink.wait_for_async(1)

                # The database refuses the role: new connections, and the
                # ones it had are ended.
                await admin.execute(f"ALTER ROLE {role} NOLOGIN")
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
                    role,
                )
                outage = worker.supervised.outage
                await _until(_async(lambda: outage.failed_rounds >= ROUNDS), "polls refused")
                async with admin.acquire() as conn:
                    await queue.enqueue(conn, [mail_delivery(2)])
                await admin.execute(f"ALTER ROLE {role} LOGIN")

                await smtp_sink.wait_for_async(2)
                await _until(
                    lambda: _count_is(admin, queue, DeliveryState.DELIVERED, 2), "2 recorded"
                )
    finally:
        if refused is not None:
            await refused.close()
        await admin.execute(f"DROP OWNED BY {role}")
        await admin.execute(f"DROP ROLE {role}")

    logged = _lines(caplog, "delivery queue")
    assert len(logged) >= ROUNDS + 1
    assert [r.levelno for r in logged if r.levelno > logging.DEBUG] == [
        logging.WARNING,
        logging.INFO,
    ]
    assert next(r for r in logged if r.levelno == logging.WARNING).exc_info is None
    ended = next(r for r in logged if r.levelno == logging.INFO)
    assert ended.__dict__["failed_rounds"] >= ROUNDS
    # Paced by the poll, not a busy loop against the database (it once was,
    # when a wake-up from before the loss was left set: hundreds a second).
    assert ended.__dict__["outage_seconds"] >= ended.__dict__["failed_rounds"] * 0.05 / 3
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    # Each refused operation counted, by what it was (docs: the notifier's README).
    errors = {
        sample.labels["operation"]: sample.value
        for family in registry.collect()
        if family.name == "bugless_notify_queue_errors"
        for sample in family.samples
        if sample.name.endswith("_total")
    }
    assert errors, "no queue error was counted"
    assert set(errors) <= {"claim", "record", "release", "connect", "purge"}, errors
    assert sum(errors.values()) >= ROUNDS
