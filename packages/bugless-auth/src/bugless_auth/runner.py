"""Running the Authenticator in a process: store, backends, servicer, health, drain."""

from __future__ import annotations

import logging

from grpclib.health.check import ServiceCheck
from prometheus_client import REGISTRY, CollectorRegistry

from bugless_auth.service import AuthService
from bugless_auth.servicer import AuthenticatorServicer
from bugless_auth.settings import AuthSettings
from bugless_auth.store import IdentityStore
from bugless_core import tracing
from bugless_core.grpc import READINESS_TTL_SECONDS, GrpcServerSettings, GrpcServiceRunner
from bugless_core.plugins import Plugins

_log = logging.getLogger("bugless.auth")


async def start_auth(
    plugins: Plugins,
    settings: AuthSettings,
    grpc_settings: GrpcServerSettings,
    *,
    migrate: bool = False,
    metrics_registry: CollectorRegistry = REGISTRY,
) -> tuple[AuthService, GrpcServiceRunner]:
    """Open the service and start serving it; the caller stops both.

    Health for ``bugless.v1.Authenticator`` follows the database: NOT_SERVING
    while it cannot be reached, SERVING again when it can, without a restart.
    """
    tracing.configure("auth")
    if migrate:
        version = await IdentityStore.migrate(
            settings.database_url, settings.schema, dialect=settings.database_dialect
        )
        _log.info("auth schema at version %d", version, extra={"schema_version": version})
    service = await AuthService.open(settings, plugins, metrics_registry=metrics_registry)
    database = ServiceCheck(
        service.store.check_ready, check_ttl=READINESS_TTL_SECONDS, check_timeout=1.5
    )
    runner = GrpcServiceRunner(
        [AuthenticatorServicer(service)],
        grpc_settings,
        name="auth",
        readiness_checks=[database],
        metrics_registry=metrics_registry,
    )
    try:
        await runner.start()
    except BaseException:
        await service.close()
        raise
    _log.info(
        "authenticators enabled: %s",
        ", ".join(settings.authenticators),
        extra={"authenticators": list(settings.authenticators)},
    )
    return service, runner


async def serve_auth(
    plugins: Plugins,
    settings: AuthSettings,
    grpc_settings: GrpcServerSettings,
    *,
    migrate: bool = False,
) -> int:
    """Serve until SIGTERM/SIGINT, then drain and close the service.

    Returns:
        The process's exit status (:meth:`GrpcServiceRunner.serve_until_signalled`).
    """
    service, runner = await start_auth(plugins, settings, grpc_settings, migrate=migrate)
    try:
        return await runner.serve_until_signalled()
    finally:
        await service.close()
