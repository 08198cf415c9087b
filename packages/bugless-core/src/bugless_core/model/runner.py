"""Running the Model service in a process: backend, servicer, health, drain."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random

from grpclib.health.check import ServiceCheck

from bugless_core import tracing
from bugless_core.assertions import AssertionVerifier
from bugless_core.attachments import AttachmentSettings
from bugless_core.blobs import DEFAULT_STORE, STORE_ENV, BlobStore, connect_blob_store
from bugless_core.clients import ServiceAddress
from bugless_core.database_errors import is_database_error
from bugless_core.failover import DrainAwareAuthenticatorStub
from bugless_core.grpc import READINESS_TTL_SECONDS, GrpcServerSettings, GrpcServiceRunner
from bugless_core.model._viewer_checks import UserGroupsSource, authenticator_user_groups
from bugless_core.model.backend import ModelBackend, ModelSettings
from bugless_core.model.servicer import ModelServicer
from bugless_core.plugins import Plugins
from bugless_core.supervision import OutageLog, SupervisedLoop
from bugless_proto import v1

_log = logging.getLogger("bugless.model")


async def start_model(
    plugins: Plugins,
    backend_cls: type[ModelBackend],
    settings: ModelSettings,
    grpc_settings: GrpcServerSettings,
    *,
    migrate: bool = False,
    attachments: AttachmentSettings | None = None,
    assertions: AssertionVerifier | None = None,
    user_groups: UserGroupsSource | None = None,
) -> tuple[ModelBackend, GrpcServiceRunner]:
    """Open the backend and its blob store and start serving; the caller stops all three.

    The blob store is the one ``BUGLESS_BLOB_STORE`` names (``database`` by
    default, in the Model's database), its other settings from the environment; :func:`close_model`
    closes it with the backend. Health for ``bugless.v1.Model`` follows the
    database: NOT_SERVING while it cannot be reached, SERVING again when it
    can, without a restart.
    """
    tracing.configure("model")
    if migrate:
        version = await backend_cls.migrate(settings)
        _log.info("schema at version %d", version, extra={"schema_version": version})
    backend = await backend_cls.open(settings)
    # The `database` store lives in the Model's own database, whatever the
    # environment says: it has the same meaning as the Model's settings.
    environ = {
        **os.environ,
        "BUGLESS_DATABASE_URL": settings.database_url,
        "BUGLESS_DATABASE_SCHEMA": settings.schema,
    }
    if not environ.get(STORE_ENV) and DEFAULT_STORE not in plugins.blob_stores:
        _log.warning(
            "no blob store: attachments are off (install bugless-model-postgres for the "
            "%r store, or set %s)",
            DEFAULT_STORE,
            STORE_ENV,
        )
    else:
        try:
            store = await connect_blob_store(plugins.blob_stores, environ)
        except BaseException:
            await backend.close()
            raise
        backend.use_blob_store(store, attachments)
    if plugins.watches_issue_changes:
        backend.add_change_listener(
            lambda issue, entry: plugins.notify_issue_changed(issue, entry, backend_cls.name)
        )
    database = ServiceCheck(backend.check_ready, check_ttl=READINESS_TTL_SECONDS, check_timeout=1.0)
    runner = GrpcServiceRunner(
        [ModelServicer(backend, assertions=assertions, user_groups=user_groups)],
        grpc_settings,
        name="model",
        readiness_checks=[database],
    )
    try:
        await runner.start()
    except BaseException:
        await close_model(backend)
        raise
    return backend, runner


async def close_model(backend: ModelBackend) -> None:
    """Close the backend and the blob store :func:`start_model` connected."""
    store: BlobStore | None = backend._blob_store
    try:
        await backend.close()
    finally:
        if store is not None:
            await store.close()


async def serve_model(
    plugins: Plugins,
    backend_cls: type[ModelBackend],
    settings: ModelSettings,
    grpc_settings: GrpcServerSettings,
    *,
    migrate: bool = False,
    attachments: AttachmentSettings | None = None,
    auth: ServiceAddress | None = None,
    assertion_refresh_seconds: float = 5.0,
    assertion_cache_entries: int = 100_000,
) -> int:
    """Serve until SIGTERM/SIGINT, then drain and close the backend.

    With ``auth``, callers come from identity assertions verified with that
    Authenticator's keys; without (``--insecure-local`` only), from requests.

    Returns:
        The process's exit status (:meth:`GrpcServiceRunner.serve_until_signalled`).
    """
    channel = None if auth is None else auth.channel()
    verifier = None
    user_groups = None
    if channel is not None:
        auth_stub = DrainAwareAuthenticatorStub(channel)
        verifier = authenticator_verifier(
            auth_stub, refresh_seconds=assertion_refresh_seconds, max_cached=assertion_cache_entries
        )
        user_groups = authenticator_user_groups(auth_stub)
    else:
        _log.warning(
            "no --auth: the Model believes the caller each request names (--insecure-local)"
        )
    backend, runner = await start_model(
        plugins,
        backend_cls,
        settings,
        grpc_settings,
        migrate=migrate,
        attachments=attachments,
        assertions=verifier,
        user_groups=user_groups,
    )
    sweeper = None
    if backend._blob_store is not None and backend.attachment_settings.sweep_seconds:
        sweeper = asyncio.create_task(sweep_periodically(backend, backend.attachment_settings))
    try:
        return await runner.serve_until_signalled()
    finally:
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
        await close_model(backend)
        if channel is not None:
            channel.close()


async def sweep_periodically(backend: ModelBackend, settings: AttachmentSettings) -> None:
    """Every ``sweep_seconds`` (give or take a quarter, so replicas spread out), sweep.

    Every replica sweeps: removals re-check under a lock, so two sweeps at
    once cost a second look, never a wrong removal. A sweep the database (or
    the store) failed is an outage: tried again at the next interval, logged
    when it starts and ends (:class:`~bugless_core.supervision.OutageLog`).
    Any other failure is supervised as ``model.attachment_sweep``
    (:class:`~bugless_core.supervision.SupervisedLoop`: logged with its
    traceback, counted) and the next round tries again, after the interval or
    the backoff of the failures in a row, whichever is longer.
    """
    supervised = SupervisedLoop(
        "model.attachment_sweep",
        outage=OutageLog(
            "attachment sweep", logger=_log, meanwhile="trying again at the next interval"
        ),
    )
    wait = settings.sweep_seconds * random.uniform(0.75, 1.25)
    while True:
        await asyncio.sleep(wait)
        wait = settings.sweep_seconds * random.uniform(0.75, 1.25)
        try:
            await backend.sweep_orphaned_content(settings.orphan_grace_seconds)
        except Exception as exc:
            if is_database_error(exc):
                supervised.unavailable(exc)
            else:
                wait = supervised.failed(exc, at_least=wait)
        else:
            supervised.succeeded()


def authenticator_verifier(
    auth: v1.AuthenticatorStub, *, refresh_seconds: float = 5.0, max_cached: int = 100_000
) -> AssertionVerifier:
    """An assertion verifier fed by ``auth``'s ``GetVerificationKeys``."""

    async def fetch() -> v1.VerificationKeys:
        return await auth.get_verification_keys(v1.GetVerificationKeysRequest(), timeout=5.0)

    return AssertionVerifier(fetch, refresh_seconds=refresh_seconds, max_cached=max_cached)
