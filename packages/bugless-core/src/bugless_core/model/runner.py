"""Running the Model service in a process: backend, servicer, health, drain."""

from __future__ import annotations

import logging

from grpclib.health.check import ServiceCheck

from bugless_core import tracing
from bugless_core.grpc import GrpcServerSettings, GrpcServiceRunner
from bugless_core.model.backend import ModelBackend, ModelSettings
from bugless_core.model.servicer import ModelServicer
from bugless_core.plugins import Plugins

_log = logging.getLogger("bugless.model")

#: How long a database readiness answer is reused by health checks: short, so
#: a balancer sees a database outage within seconds, long enough that probes
#: from several balancers cost one query.
READINESS_TTL_SECONDS = 2.0


async def start_model(
    plugins: Plugins,
    backend_cls: type[ModelBackend],
    settings: ModelSettings,
    grpc_settings: GrpcServerSettings,
    *,
    migrate: bool = False,
) -> tuple[ModelBackend, GrpcServiceRunner]:
    """Open the backend and start serving it; the caller stops both.

    Health for ``bugless.v1.Model`` follows the database: NOT_SERVING while it
    cannot be reached, SERVING again when it can, without a restart.
    """
    tracing.configure("model")
    if migrate:
        version = await backend_cls.migrate(settings)
        _log.info("schema at version %d", version, extra={"schema_version": version})
    backend = await backend_cls.open(settings)
    if plugins.watches_issue_changes:
        backend.add_change_listener(
            lambda issue, entry: plugins.notify_issue_changed(issue, entry, backend_cls.name)
        )
    database = ServiceCheck(backend.check_ready, check_ttl=READINESS_TTL_SECONDS, check_timeout=1.0)
    runner = GrpcServiceRunner(
        [ModelServicer(backend)], grpc_settings, name="model", readiness_checks=[database]
    )
    try:
        await runner.start()
    except BaseException:
        await backend.close()
        raise
    return backend, runner


async def serve_model(
    plugins: Plugins,
    backend_cls: type[ModelBackend],
    settings: ModelSettings,
    grpc_settings: GrpcServerSettings,
    *,
    migrate: bool = False,
) -> None:
    """Serve until SIGTERM/SIGINT, then drain and close the backend."""
    backend, runner = await start_model(
        plugins, backend_cls, settings, grpc_settings, migrate=migrate
    )
    try:
        await runner.serve_until_signalled()
    finally:
        await backend.close()
