"""Running the API frontend in a process: channels, services, health, drain."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

from grpclib.client import Channel
from grpclib.health.check import ServiceCheck
from prometheus_client import REGISTRY, CollectorRegistry

from bugless_api._catalog import (
    AccountService,
    ComponentsService,
    HotlistsService,
    SavedSearchesService,
)
from bugless_api._follow import NotificationsService
from bugless_api._gateway import Gateway
from bugless_api._issues import IssuesService
from bugless_api._webhooks import WebhooksService
from bugless_api.settings import ApiSettings
from bugless_core import tracing
from bugless_core.clients import ServiceAddress, warn_if_insecure
from bugless_core.failover import (
    DrainAwareAuthenticatorStub,
    DrainAwareModelStub,
    serving_behind,
)
from bugless_core.grpc import READINESS_TTL_SECONDS, GrpcServiceRunner, IServable
from bugless_core.user_cache import feed_read_recorder
from bugless_proto import v1

_log = logging.getLogger("bugless.api")

#: The public services the API serves, each with its ACCESS table.
SERVICE_CLASSES = (
    AccountService,
    IssuesService,
    ComponentsService,
    HotlistsService,
    SavedSearchesService,
    NotificationsService,
    WebhooksService,
)


def _backend_ready(address: ServiceAddress, service: str) -> Callable[[], Awaitable[bool]]:
    """A readiness check: some replica behind ``address`` answers ``service`` SERVING.

    Asked on fresh connections (:func:`serving_behind`), not on the channel
    the calls use: that one stays on whichever replica the balancer picked
    for it, and a replica that drains must not take every API replica out of
    rotation with it.
    """

    async def check() -> bool:
        return await serving_behind(address, service)

    return check


@dataclass
class RunningApi:
    """A started API frontend; :meth:`close` stops it and its channels.

    Attributes:
        runner: The gRPC runner (``runner.port`` is the bound port).
        gateway: The shared state of the services (identity cache, limiter).
    """

    runner: GrpcServiceRunner
    gateway: Gateway
    channels: tuple[Channel, ...]

    @property
    def port(self) -> int:
        """The port the API listens on."""
        return self.runner.port

    async def close(self) -> None:
        """Stop serving at once and close the backend channels."""
        await self.runner.close()
        self.gateway.close()
        for channel in self.channels:
            channel.close()


async def start_api(settings: ApiSettings, **runner_options: object) -> RunningApi:
    """Connect to the Model and the Authenticator and start serving.

    Health reports the API services SERVING only while both backends answer
    SERVING too, so a balancer takes a replica whose backends are gone out of
    rotation. ``runner_options`` go to :class:`GrpcServiceRunner` (tests pass
    their own metrics registry, where the users' change feed's gauge goes too).
    """
    tracing.configure("api")
    warn_if_insecure("api", model=settings.model, auth=settings.auth)
    if settings.notify is not None:
        warn_if_insecure("api", notify=settings.notify)
    model_channel = settings.model.channel()
    # Attachment transfers move at their clients' pace: on a connection of
    # their own, a client that stops reading holds up no other call.
    transfer_channel = settings.model.transfer_channel()
    # So do watches, at their bots' pace: on another connection, apart from
    # the calls and the transfers.
    watch_channel = settings.model.watch_channel()
    auth_channel = settings.auth.channel()
    channels = [model_channel, transfer_channel, watch_channel, auth_channel]
    notifier = None
    if settings.notify is not None:
        notify_channel = settings.notify.channel()
        channels.append(notify_channel)
        notifier = v1.NotifierStub(notify_channel)
    # A replica that drains refuses new calls on the connection the API holds
    # to it; the stubs send such a call again on a new connection.
    registry = runner_options.get("metrics_registry", REGISTRY)
    gateway = Gateway(
        settings,
        DrainAwareModelStub(model_channel),
        DrainAwareAuthenticatorStub(auth_channel),
        notifier,
        on_feed_read=feed_read_recorder(cast("CollectorRegistry", registry)),
        metrics_registry=cast("CollectorRegistry", registry),
        model_transfers=DrainAwareModelStub(transfer_channel),
        model_watches=DrainAwareModelStub(watch_channel),
    )
    services: list[IServable] = [service(gateway) for service in SERVICE_CLASSES]
    checks = [
        ServiceCheck(
            _backend_ready(settings.model, "bugless.v1.Model"),
            check_ttl=READINESS_TTL_SECONDS,
            check_timeout=1.5,
        ),
        ServiceCheck(
            _backend_ready(settings.auth, "bugless.v1.Authenticator"),
            check_ttl=READINESS_TTL_SECONDS,
            check_timeout=1.5,
        ),
    ]
    runner = GrpcServiceRunner(
        services,
        settings.grpc,
        name="api",
        readiness_checks=checks,
        more_client_cas=settings.people_ca_certs,
        **runner_options,  # type: ignore[arg-type]
    )
    try:
        await runner.start()
    except BaseException:
        for channel in channels:
            channel.close()
        raise
    return RunningApi(runner=runner, gateway=gateway, channels=tuple(channels))


async def serve_api(settings: ApiSettings) -> int:
    """Serve until SIGTERM/SIGINT, then drain and close the channels.

    Returns:
        The process's exit status (:meth:`GrpcServiceRunner.serve_until_signalled`).
    """
    api = await start_api(settings)
    try:
        return await api.runner.serve_until_signalled()
    finally:
        api.gateway.close()
        for channel in api.channels:
            channel.close()
