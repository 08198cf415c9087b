"""A running notifier whose schema moves under it: the Model's rule, for its own schema.

docs/upgrades.md: the first replica of a newer notifier migrates the
notifier's schema while the old ones run; they must go on consuming and
delivering, stay ready, and say so once (a WARNING, ``bugless_schema_version_skew``
above 0), refusing only to start again. A schema that falls behind the code
(a restore of an older backup) makes a replica not ready (an ERROR once, the
gauge below 0) until ``migrate`` brings it back. The notifier runs in this
process on the stack's real Model and Authenticator and a real PostgreSQL;
readiness is read through its gRPC health service, the gauge from the
registry its ``/metrics`` serves.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import socket

import asyncpg
import pytest
from notify_support import stack_notifier_settings
from prometheus_client import CollectorRegistry

from bugless_core.errors import FailedPrecondition
from bugless_core.migrations import load_migrations
from bugless_core.service_address import ServiceAddress
from bugless_dev.processes import check_grpc_health
from bugless_dev.stack import LocalStack
from bugless_notify.queue import DeliveryQueue
from bugless_notify.service import RunningNotifier, start_notifier
from bugless_notify.settings import NotifierSettings
from bugless_proto import v1
from bugless_testing.health import health_until
from bugless_testing.schemas import (
    SKEW_LOGGER,
    assert_said_ahead,
    assert_said_behind_then_back,
    drop_schema,
    migrate_ahead,
    restore_older,
)
from bugless_testing.smtp import SmtpSink

ADMIN = v1.Caller(user_id="test-admin", admin=True)
SERVICE = "bugless.v1.Notifier"
SKEW = "bugless_schema_version_skew"


def newest_version() -> int:
    return load_migrations("bugless_notify")[-1].version


async def _start(
    stack: LocalStack, database_url: str, schema: str, sink: SmtpSink
) -> tuple[RunningNotifier, CollectorRegistry]:
    """A notifier on ``schema`` in this process, and the registry its ``/metrics`` serves."""
    registry = CollectorRegistry()
    settings = stack_notifier_settings(
        stack, database_url=database_url, schema=schema, smtp_port=sink.port
    )
    return await start_notifier(settings, metrics_registry=registry), registry


async def test_a_notifier_running_when_a_newer_release_migrates_delivers_on_until_restarted(
    *,
    bugless_stack: LocalStack,
    model: v1.ModelStub,
    notify_database: str,
    smtp_sink: SmtpSink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tag = secrets.token_hex(3)
    schema = f"notify_rolling_{tag}"
    mailbox = f"carol{tag}@example.test"
    carol = await asyncio.to_thread(
        bugless_stack.add_user, f"carol{tag}", "pw-" + tag * 3, email=mailbox
    )
    component = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"skew-{tag}")
    )
    skew = {"component": "bugless-notify", "schema": schema}
    notifier, registry = await _start(bugless_stack, notify_database, schema, smtp_sink)
    address = ServiceAddress("127.0.0.1", notifier.runner.port)
    try:
        await health_until(address, SERVICE, "SERVING")
        assert registry.get_sample_value(SKEW, skew) == 0
        await migrate_ahead(notify_database, schema, newest_version() + 1)
        with caplog.at_level(logging.INFO, logger=SKEW_LOGGER):
            async with asyncio.timeout(15):
                while registry.get_sample_value(SKEW, skew) != 1:
                    assert await check_grpc_health(address, SERVICE) == "SERVING"
                    await asyncio.sleep(0.2)
            await asyncio.sleep(2.5)  # one more readiness read: still said once
            assert await check_grpc_health(address, SERVICE) == "SERVING"

        # It serves on: a change made now is consumed and mailed, once.
        issue = await model.create_issue(
            v1.CreateIssueRequest(
                caller=ADMIN,
                fields=v1.IssueFields(
                    title=f"after the migration {tag}", component_id=component.id
                ),
                cc=[str(carol["user_id"])],
            )
        )
        await smtp_sink.wait_for_async(1, 30)  # the sink is this test's alone meanwhile
        await asyncio.sleep(1.0)
        mails = [m for m in smtp_sink.mails if mailbox in m.recipients]
        assert len(mails) == 1
        assert f"after the migration {tag}" in mails[0].message["Subject"]
        body = mails[0].message.get_body(("plain",))
        assert body is not None
        assert f"/issues/{issue.id}" in body.get_content()
        with pytest.raises(FailedPrecondition, match="upgrade bugless"):
            await DeliveryQueue(schema).migrate(notifier.pool)  # what a restart would do first
    finally:
        await notifier.runner.close()
        await notifier.close()

    assert_said_ahead(caplog.records, "bugless-notify", newest_version() + 1)


async def test_a_notifier_whose_schema_falls_behind_its_code_is_not_ready_until_migrated(
    *,
    bugless_stack: LocalStack,
    notify_database: str,
    smtp_sink: SmtpSink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The schema swapped under the notifier for one a version older, as a restore does."""
    schema = f"notify_restored_{secrets.token_hex(3)}"
    skew = {"component": "bugless-notify", "schema": schema}
    notifier, registry = await _start(bugless_stack, notify_database, schema, smtp_sink)
    address = ServiceAddress("127.0.0.1", notifier.runner.port)
    aside: str | None = None
    try:
        await health_until(address, SERVICE, "SERVING")
        aside = await restore_older(
            notify_database, schema, load_migrations("bugless_notify"), component="bugless-notify"
        )
        with caplog.at_level(logging.INFO, logger=SKEW_LOGGER):
            await health_until(address, SERVICE, "NOT_SERVING")
            assert registry.get_sample_value(SKEW, skew) == -1
            await asyncio.sleep(2.5)  # read again: still not ready, not said again
            assert await check_grpc_health(address, SERVICE) == "NOT_SERVING"
            await DeliveryQueue(schema).migrate(notifier.pool)
            await health_until(address, SERVICE, "SERVING")
        assert registry.get_sample_value(SKEW, skew) == 0
        assert_said_behind_then_back(caplog.records, "bugless-notify", newest_version())
    finally:
        await notifier.runner.close()
        await notifier.close()
        if aside is not None:
            await drop_schema(notify_database, aside)


async def _connections_named(database_url: str, application_name: str) -> int:
    """How many of the server's connections carry ``application_name`` (pg_stat_activity)."""
    conn = await asyncpg.connect(database_url)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            application_name,
        )
    finally:
        await conn.close()
    return count


def _named_settings(
    stack: LocalStack, database_url: str, schema: str, sink: SmtpSink, name: str
) -> NotifierSettings:
    """A notifier's settings whose database connections carry ``name`` as application_name."""
    return stack_notifier_settings(
        stack,
        database_url=f"{database_url}?application_name={name}",
        schema=schema,
        smtp_port=sink.port,
    )


async def test_a_notifier_refusing_a_newer_schema_at_start_leaves_no_connection_open(
    *, bugless_stack: LocalStack, notify_database: str, smtp_sink: SmtpSink
) -> None:
    """The refusal names the fix, and the pool it opened to find out is closed again."""
    schema = f"notify_newer_{secrets.token_hex(3)}"
    pool = await asyncpg.create_pool(notify_database, min_size=1, max_size=2)
    try:
        await DeliveryQueue(schema).migrate(pool)
    finally:
        await pool.close()
    await migrate_ahead(notify_database, schema, newest_version() + 1)
    name = f"refused-{secrets.token_hex(3)}"
    settings = _named_settings(bugless_stack, notify_database, schema, smtp_sink, name)
    with pytest.raises(FailedPrecondition, match=r"upgrade bugless-notify"):
        await start_notifier(settings, metrics_registry=CollectorRegistry())
    assert await _connections_named(notify_database, name) == 0
    await drop_schema(notify_database, schema)


async def test_a_notifier_failing_late_in_its_start_closes_what_it_opened(
    *, bugless_stack: LocalStack, notify_database: str, smtp_sink: SmtpSink
) -> None:
    """Its status port taken: the start fails after the pool and the channels were opened."""
    schema = f"notify_busy_{secrets.token_hex(3)}"
    name = f"busy-{secrets.token_hex(3)}"
    settings = _named_settings(bugless_stack, notify_database, schema, smtp_sink, name)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = dataclasses.replace(settings.grpc, port=taken.getsockname()[1])
        with pytest.raises(OSError, match="in use"):
            await start_notifier(
                dataclasses.replace(settings, grpc=busy), metrics_registry=CollectorRegistry()
            )
    assert await _connections_named(notify_database, name) == 0
    await drop_schema(notify_database, schema)
