"""A rolling restart of the Model under a running notifier costs it no failed call.

Two real Model replicas (``bugless model serve`` on the stack's database)
share one port with ``--reuse-port``, as a pod and its replacement share a
Service during a rollout with ``maxSurge: 1``: the new one is up before the
old one drains. The notifier (in this process, so its log records can be
read) has its one connection to the Model open to the old replica when that
drains; a ``Watch`` on a channel of the test's own keeps the old replica in
its grace period, so it no longer listens but refuses every new call on the
notifier's open connection with UNAVAILABLE tagged ``DRAINING``: the notifier
here does not say it honours a graceful GOAWAY (``without_goaway``: a
notifier from before, or a call that raced the GOAWAY), which would have
sent its calls elsewhere unrefused.

The feed consumer's next read and the webhook admin's permission check must
go to the new replica at once (the call sent again on a new connection,
``bugless_core.failover``): no failed round of the consumer, no failed call of
the admin, and the webhook delivered on its first attempt. With plain stubs
each call went down the old connection again for the whole grace period.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from collections.abc import AsyncIterator

import pytest
from notify_support import (
    SECRET,
    WebhookReceiver,
    assert_moved_off_a_draining_replica,
    old_replica,
    replace_and_drain,
    stack_notifier_settings,
    until,
    until_held,
)
from prometheus_client import CollectorRegistry

from bugless_core.clients import ServiceAddress, acting_as, call
from bugless_dev.stack import LocalStack, RunningService
from bugless_notify.queue import DeliveryState
from bugless_notify.service import start_notifier
from bugless_proto import v1
from bugless_testing.goaway import without_goaway
from bugless_testing.metrics import metric_total
from bugless_testing.smtp import SmtpSink

ADMIN = v1.Caller(user_id="test-admin", admin=True)
HANDLED = "grpc_server_handled_total"


async def _metric(replica: RunningService, name: str, **labels: str) -> int:
    """The sum of ``name``'s samples with ``labels`` on ``replica``'s own ``/metrics``."""
    return int(await metric_total(replica.metrics_port, name, **labels))


@pytest.fixture
async def old_model(bugless_stack: LocalStack) -> AsyncIterator[RunningService]:
    """The replica the notifier first connects to; the test drains it."""
    async with old_replica(bugless_stack, "model") as replica:
        yield replica


async def test_a_draining_model_costs_the_consumer_and_the_webhook_admin_no_failed_call(
    *,
    monkeypatch: pytest.MonkeyPatch,
    bugless_stack: LocalStack,
    model: v1.ModelStub,
    old_model: RunningService,
    notify_database: str,
    smtp_sink: SmtpSink,
    receiver: WebhookReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    without_goaway(monkeypatch)
    tag = secrets.token_hex(3)
    # A real user: a webhook's deliveries are checked as its creator's reads.
    created = await asyncio.to_thread(bugless_stack.add_user, f"owner{tag}", "pw-" + tag * 3)
    owner = str(created["user_id"])
    component = await model.create_component(
        v1.CreateComponentRequest(
            caller=ADMIN,
            name=f"rollout-{tag}",
            acl=[v1.AclEntry(principal=v1.Principal(user=owner), role=v1.Role.ADMIN)],
        )
    )

    async def change(title: str) -> v1.Issue:
        """A change in the feed, written through the session's own Model."""
        return await model.create_issue(
            v1.CreateIssueRequest(
                caller=ADMIN,
                fields=v1.IssueFields(title=f"{title} {tag}", component_id=component.id),
                idempotency_key=secrets.token_hex(8),
            )
        )

    settings = stack_notifier_settings(
        bugless_stack,
        database_url=notify_database,
        schema=f"notify_rollout_{tag}",
        smtp_port=smtp_sink.port,
        model_port=old_model.port,
    )
    new_model: RunningService | None = None
    watch: asyncio.Task[None] | None = None
    watch_channel = dataclasses.replace(
        bugless_stack.client_address("model", "web"), port=old_model.port
    ).channel()
    with caplog.at_level(logging.INFO):
        notifier = await start_notifier(settings, metrics_registry=CollectorRegistry())
        consumer = notifier.consumer
        admin_channel = ServiceAddress("127.0.0.1", notifier.runner.port).channel()
        webhooks = v1.NotifierStub(admin_channel)
        owner_says = bugless_stack.assertion_for(owner)
        try:
            # The notifier's connection is open to the old replica, the only one yet.
            issue = await change("Before the rollout")
            await until(lambda: consumer.handled >= 1, "the first change consumed")
            with acting_as(owner_says):
                added = await call(
                    webhooks.add_component_webhook,
                    v1.AddComponentWebhookRequest(
                        component_id=component.id, url=receiver.url(f"/{tag}"), secret=SECRET
                    ),
                )

            stream = v1.ModelStub(watch_channel).watch(
                v1.WatchRequest(caller=ADMIN, issue_id=issue.id)
            )

            async def follow() -> None:
                async for _ in stream:
                    pass

            with acting_as(bugless_stack.assertion_for(ADMIN.user_id, permissions=["admin"])):
                watch = asyncio.create_task(follow())
            await until_held(old_model, "Watch", watch)
            new_model = await replace_and_drain(bugless_stack, old_model, "model")

            # The consumer's next read meets the draining replica and moves on.
            await change("During the rollout")
            got = await asyncio.to_thread(receiver.wait_for, f"/{tag}", 1, 30.0)
            # So does the admin's permission check (on the connection the
            # consumer left, or the old one if it still waits on its read).
            with acting_as(owner_says):
                listed = await call(
                    webhooks.list_component_webhooks,
                    v1.ListComponentWebhooksRequest(component_id=component.id),
                )
            assert [w.name for w in listed.webhooks] == [added.name]

            assert [r.status for r in got] == [200]
            async with notifier.pool.acquire() as conn:
                record = await notifier.worker.queue.get(conn, got[0].delivery_id)
            assert record is not None
            assert (record.state, record.attempts) == (DeliveryState.DELIVERED, 1)
            assert await _metric(old_model, HANDLED, grpc_code="UNAVAILABLE") >= 1, (
                "the old replica refused nothing"
            )
            assert (
                await _metric(new_model, HANDLED, grpc_code="OK") >= 2
            )  # the feed's read, the admin's check
            assert not old_model.process.exited, "the old replica closed too early"
        finally:
            if watch is not None:
                watch.cancel()
                await asyncio.gather(watch, return_exceptions=True)
            watch_channel.close()
            admin_channel.close()
            await notifier.runner.close()
            await notifier.close()
            if new_model is not None:
                await asyncio.to_thread(bugless_stack.stop_service, new_model)

    assert_moved_off_a_draining_replica(caplog.records)
