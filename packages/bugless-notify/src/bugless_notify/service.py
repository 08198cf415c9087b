"""``bugless notify serve``: the feed consumer, the delivery worker and a status service.

Every replica runs all three: the consumer works only while this replica holds
the consumer lock (one at a time), the worker shares deliveries with the other
replicas (``FOR UPDATE SKIP LOCKED`` and leases), and the gRPC server answers
health, reflection, metrics and ``bugless.v1.Notifier`` (delivery counts and
dead letters, for the admin page).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import asyncpg
from grpclib.health.check import ServiceCheck
from prometheus_client import REGISTRY, CollectorRegistry

from bugless_core.clients import ActingFor
from bugless_core.errors import InvalidArgument
from bugless_core.failover import DrainAwareAuthenticatorStub, DrainAwareModelStub
from bugless_core.grpc import READINESS_TTL_SECONDS, AccessTable, GrpcServiceRunner, grpc_errors
from bugless_core.migrations import quote_schema
from bugless_core.model.runner import authenticator_verifier
from bugless_core.notification_channel import NotificationChannel
from bugless_notify._deliveries import IssueDeliveries
from bugless_notify._recheck import RedactionRecheck
from bugless_notify._supervise import serve_supervised
from bugless_notify.addresses import AddressPolicy
from bugless_notify.component_webhooks import ComponentWebhookAdmin, ComponentWebhookStore
from bugless_notify.consumer import CURSOR, ConsumerOptions, FeedConsumer
from bugless_notify.digest import DigestSender, DigestStore
from bugless_notify.endpoints import WebhookEndpointStore
from bugless_notify.mail import EmailChannel
from bugless_notify.queue import DeliveryQueue, DeliveryState
from bugless_notify.sealing import SecretSealer
from bugless_notify.settings import NotifierSettings
from bugless_notify.webhook import WebhookChannel
from bugless_notify.worker import DeliveryWorker, WorkerSettings
from bugless_proto import v1

_log = logging.getLogger("bugless.notify")


class NotifierService(v1.NotifierBase):
    """Serves ``bugless.v1.Notifier``: how deliveries are going."""

    #: The web's admin page (which checks that the person is an admin) and
    #: operators' tools; nobody else reads or acts on dead letters.
    ACCESS: ClassVar[AccessTable] = {
        "GetDeliveryStatus": frozenset({"web", "@admin"}),
        "RetryDeadLetters": frozenset({"web", "@admin"}),
        "DiscardDeadLetters": frozenset({"web", "@admin"}),
        # The web and the API (its Webhooks service), for the person whose
        # assertion they forward; the notifier checks that person's role on
        # the component with the Model.
        "ListComponentWebhooks": frozenset({"web", "api", "@admin"}),
        "AddComponentWebhook": frozenset({"web", "api", "@admin"}),
        "SetComponentWebhookEnabled": frozenset({"web", "api", "@admin"}),
        "DeleteComponentWebhook": frozenset({"web", "api", "@admin"}),
    }

    def __init__(
        self, pool: asyncpg.Pool, queue: DeliveryQueue, webhooks: ComponentWebhookAdmin
    ) -> None:
        """Read from the notifier's ``pool``; manage component webhooks with ``webhooks``."""
        self._pool = pool
        self._queue = queue
        self._webhooks = webhooks
        self._cursor_sql = (
            f"SELECT position FROM {quote_schema(queue.schema)}.feed_cursor WHERE name = $1"
        )

    @grpc_errors
    async def get_delivery_status(self, message: v1.GetDeliveryStatusRequest) -> v1.DeliveryStatus:
        """Counts by state, the feed position, and the newest dead letters."""
        limit = max(0, min(message.max_dead_letters, 1000))
        async with self._pool.acquire() as conn:
            counts = await self._queue.counts(conn)
            position = await conn.fetchval(self._cursor_sql, CURSOR) or 0
            dead = await self._queue.list_dead(conn, limit=limit) if limit else None
        return v1.DeliveryStatus(
            pending=counts[DeliveryState.PENDING],
            delivered=counts[DeliveryState.DELIVERED],
            dead=counts[DeliveryState.DEAD],
            feed_position=position,
            dead_letters=[
                v1.DeadLetter(
                    delivery_id=r.delivery_id,
                    channel=r.channel,
                    recipient_name=r.recipient_name,
                    subject=r.subject,
                    attempts=r.attempts,
                    last_error=r.last_error,
                    updated_at=r.finished_at or r.created_at,
                )
                for r in (dead.records if dead else [])
            ],
        )

    @grpc_errors
    async def retry_dead_letters(self, message: v1.DeadLettersRequest) -> v1.DeadLettersChanged:
        """Queue the given dead letters again, due now, with a fresh attempt budget."""
        ids = _delivery_ids(message)
        async with self._pool.acquire() as conn:
            changed = await self._queue.requeue(conn, ids)
        _log.info("requeued %d of %d dead letters", changed, len(ids))
        return v1.DeadLettersChanged(changed=changed)

    @grpc_errors
    async def discard_dead_letters(self, message: v1.DeadLettersRequest) -> v1.DeadLettersChanged:
        """Delete the given dead letters for good."""
        ids = _delivery_ids(message)
        async with self._pool.acquire() as conn:
            changed = await self._queue.discard(conn, ids)
        _log.info("discarded %d of %d dead letters", changed, len(ids))
        return v1.DeadLettersChanged(changed=changed)

    @grpc_errors
    async def list_component_webhooks(
        self, message: v1.ListComponentWebhooksRequest
    ) -> v1.ComponentWebhooks:
        """A component's webhook endpoints and their history (its admins)."""
        return await self._webhooks.list(message)

    @grpc_errors
    async def add_component_webhook(
        self, message: v1.AddComponentWebhookRequest
    ) -> v1.ComponentWebhook:
        """Add a webhook endpoint to a component (its admins)."""
        return await self._webhooks.add(message)

    @grpc_errors
    async def set_component_webhook_enabled(
        self, message: v1.SetComponentWebhookEnabledRequest
    ) -> v1.ComponentWebhook:
        """Enable or disable a component's webhook endpoint (its admins)."""
        return await self._webhooks.set_enabled(message)

    @grpc_errors
    async def delete_component_webhook(
        self, message: v1.DeleteComponentWebhookRequest
    ) -> v1.ComponentWebhooks:
        """Delete a component's webhook endpoint (its admins)."""
        return await self._webhooks.delete(message)


def _delivery_ids(message: v1.DeadLettersRequest) -> list[str]:
    """The request's ids, checked (1 to 1000 of them, none empty)."""
    ids = list(dict.fromkeys(message.delivery_ids))
    if not 1 <= len(ids) <= 1000:
        raise InvalidArgument(f"delivery_ids: give 1 to 1000 ids, not {len(ids)}")
    if any(not i or len(i) > 255 for i in ids):
        raise InvalidArgument("delivery_ids: an id is empty or longer than 255 characters")
    return ids


@dataclass
class RunningNotifier:
    """A started notifier; :meth:`close` stops everything it started."""

    runner: GrpcServiceRunner
    consumer: FeedConsumer
    worker: DeliveryWorker
    digests: DigestSender
    pool: asyncpg.Pool
    tasks: tuple[asyncio.Task[None], ...]
    channels: tuple[Any, ...]
    #: The delivery channels (email, webhook), whose SMTP sessions and HTTP
    #: connections :meth:`close` ends once the worker has stopped.
    delivery_channels: tuple[NotificationChannel, ...] = ()

    async def close(self) -> None:
        """Stop consuming and delivering (in-flight attempts finish), close connections."""
        self.consumer.stop()
        self.worker.stop()
        self.digests.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*self.tasks, return_exceptions=True), 60)
        for channel in self.channels:
            with contextlib.suppress(Exception):
                channel.close()
        for delivery in self.delivery_channels:
            with contextlib.suppress(Exception):
                await delivery.close()
        await self.pool.close()


async def start_notifier(
    settings: NotifierSettings, *, metrics_registry: CollectorRegistry = REGISTRY
) -> RunningNotifier:
    """Migrate the notifier's schema, start consumer, worker and status server.

    ``metrics_registry`` is the one the status server's ``/metrics`` serves,
    and every loop (consumer, worker, digests) counts into it: an alert on
    ``bugless_background_consecutive_failures`` sees what the loops count
    (the process registry unless a test runs its own).
    """
    pool: asyncpg.Pool = await asyncpg.create_pool(
        settings.database_url, min_size=2, max_size=settings.concurrency + 6
    )
    # Whatever fails from here on (a schema a newer release migrated, an
    # unreadable secret, a port in use) closes what was opened before it.
    async with contextlib.AsyncExitStack() as opened:
        opened.push_async_callback(pool.close)
        notifier = await _start_on(pool, settings, metrics_registry, opened)
        opened.pop_all()
    return notifier


async def _start_on(
    pool: asyncpg.Pool,
    settings: NotifierSettings,
    metrics_registry: CollectorRegistry,
    opened: contextlib.AsyncExitStack,
) -> RunningNotifier:
    """:func:`start_notifier` once ``pool`` is open; each thing opened goes on ``opened``."""
    queue = DeliveryQueue(settings.schema)
    await queue.migrate(pool)
    sealer = SecretSealer(settings.secret_keys)
    endpoints = WebhookEndpointStore(pool, settings.schema, sealer)
    async with pool.acquire() as conn:
        sealing = await endpoints.reseal(conn)
    if sealing.resealed:
        _log.info("sealed %d webhook secrets with the newest secret key", sealing.resealed)
    if sealing.unopened:
        _log.error(
            "no key of BUGLESS_NOTIFY_SECRET_KEYS opens the secret of the webhook endpoints "
            "%s: their deliveries fail until the key they were sealed with is given again",
            ", ".join(sealing.unopened),
        )
    if sealing.unsealed:
        _log.warning(
            "%d webhook secrets are stored unencrypted: set BUGLESS_NOTIFY_SECRET_KEYS "
            "(packages/bugless-notify README)",
            sealing.unsealed,
        )
    # One stub per service, shared: a call a draining replica refuses goes
    # once more on a new connection (bugless_core.failover), as the API's and
    # the Model's own do, so a rollout of the Model or the Authenticator costs
    # the feed consumer, the webhook admin and the people look-ups no failed call.
    model_channel = settings.model.channel()
    opened.callback(model_channel.close)
    auth_channel = settings.auth.channel()
    opened.callback(auth_channel.close)
    model = DrainAwareModelStub(model_channel)
    auth = DrainAwareAuthenticatorStub(auth_channel)
    email = await EmailChannel.open(settings.smtp.channel_options())
    opened.push_async_callback(email.close)
    webhook = await WebhookChannel.open({**settings.webhook_options(), "endpoints": endpoints})
    opened.push_async_callback(webhook.close)
    # Right before each attempt, a message whose quoted text was redacted
    # since it was rendered is rendered again (bugless_notify._recheck).
    recheck = RedactionRecheck(
        pool,
        queue,
        model,
        IssueDeliveries(
            model,
            auth,
            ActingFor(auth),
            public_url=settings.public_url,
            notify_authors=settings.notify_authors,
        ),
        ComponentWebhookStore(settings.schema),
    )
    worker = DeliveryWorker(
        pool,
        queue,
        {"email": email, "webhook": webhook},
        WorkerSettings(concurrency=settings.concurrency),
        metrics_registry=metrics_registry,
        before_send=recheck,
    )
    consumer = FeedConsumer(
        pool,
        queue,
        model,
        auth,
        ConsumerOptions(
            public_url=settings.public_url,
            notify_authors=settings.notify_authors,
            batch=settings.feed_batch,
            schema=settings.schema,
        ),
        metrics_registry=metrics_registry,
    )
    digests = DigestSender(
        pool,
        queue,
        DigestStore(settings.schema),
        hour_utc=settings.digest_hour_utc,
        interval_seconds=settings.digest_interval_seconds,
        metrics_registry=metrics_registry,
    )
    # Before reporting ready: a change made once the notifier is up is after
    # the cursor, never lost to a first start (or a restored Model) racing it.
    await consumer.start_at_head_if_restored()
    webhooks = ComponentWebhookAdmin(
        pool,
        ComponentWebhookStore(settings.schema, sealer),
        model,
        authenticator_verifier(auth),
        AddressPolicy.from_settings(settings.webhook_allowed_networks),
    )
    # Readiness reads the schema's version as the Model's does: a newer
    # notifier that migrated it leaves this one serving, an older schema (a
    # restore) makes it not ready until migrated (bugless_core.schema_skew).
    skew = queue.schema_skew(metrics_registry)
    database = ServiceCheck(
        functools.partial(skew.ready, pool), check_ttl=READINESS_TTL_SECONDS, check_timeout=1.5
    )
    runner = GrpcServiceRunner(
        [NotifierService(pool, queue, webhooks)],
        settings.grpc,
        name="notify",
        readiness_checks=[database],
        metrics_registry=metrics_registry,
    )
    await runner.start()
    opened.push_async_callback(runner.close)
    tasks = (
        asyncio.ensure_future(consumer.run()),
        asyncio.ensure_future(worker.run()),
        asyncio.ensure_future(digests.run()),
    )
    return RunningNotifier(
        runner=runner,
        consumer=consumer,
        worker=worker,
        digests=digests,
        pool=pool,
        tasks=tasks,
        channels=(model_channel, auth_channel),
        delivery_channels=(email, webhook),
    )


async def serve_notifier(settings: NotifierSettings) -> int:
    """Serve until SIGTERM/SIGINT, then stop in order.

    Returns:
        The process's exit status (:meth:`GrpcServiceRunner.serve_until_signalled`).

    Raises:
        LoopEnded: The consumer, the worker or the digests ended on their
            own (see :mod:`bugless_notify._supervise`); everything is closed.
    """
    notifier = await start_notifier(settings)
    consumer, worker, digests = notifier.tasks
    loops = {"change-feed consumer": consumer, "delivery worker": worker, "digests": digests}
    try:
        return await serve_supervised(notifier.runner, loops)
    finally:
        await notifier.close()
