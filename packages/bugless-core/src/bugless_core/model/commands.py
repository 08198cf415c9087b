"""``bugless model migrate`` and ``bugless model serve``.

The commands live in core because the Model servicer does; the storage comes
from whichever backend plugin is installed and named with ``--model``. Both
take their settings from typed dataclasses (:class:`ModelServeSettings`,
:class:`ModelMigrateSettings`), whose fields declare flags and variables once.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

import click

from bugless_core.attachments import AttachmentSettings
from bugless_core.cli import fail, start_exit_status
from bugless_core.errors import BuglessError
from bugless_core.grpc import TransferServerSettings
from bugless_core.logs import LogSettings
from bugless_core.model.settings import ModelSettings
from bugless_core.plugins import Plugins
from bugless_core.service_address import ServiceAddress
from bugless_core.settings import group, setting, settings_command

if TYPE_CHECKING:
    # The contract imports the generated messages: not for --help.
    from bugless_core.model.backend import ModelBackend

_log = logging.getLogger("bugless.model")
DEFAULT_MODEL_PORT = 50051
ENV_PREFIX = "BUGLESS_MODEL_"


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelServeSettings:
    """What ``bugless model serve`` is configured with.

    Attributes:
        backend: The Model backend plugin to use (``postgres``, ``cockroach``).
        storage: What the backend connects to and how.
        attachments: Size limits and accepted types of attachments.
        migrate: Apply migrations before serving (one-replica setups; a
            deployment runs ``bugless model migrate`` as a job instead).
        grpc: Listening, TLS, metrics and drain.
        auth: The Authenticator, whose published keys verify the identity
            assertions every caller is taken from (reached with this
            server's own certificate, ``spiffe://bugless/model``). Required
            unless ``--insecure-local``; without it the Model believes the
            caller a request names.
        assertion_refresh_seconds: How long the Authenticator's keys and list
            of ended sessions are reused; bounds how late an ended session's
            assertions are refused.
        assertion_cache_entries: Verified assertions remembered, so that a
            repeated one costs a look-up instead of a signature check; 0
            checks every call's signature (to measure what the cache saves).
        log: Log level and format.
    """

    backend: str = setting(
        "postgres",
        flag="--model",
        env="BUGLESS_MODEL",
        help="Model backend to use; `bugless plugins` lists the installed ones.",
    )
    storage: ModelSettings = group(ModelSettings)
    auth: ServiceAddress | None = setting(
        None,
        parse=ServiceAddress.parse,
        metavar="HOST:PORT",
        help="The Authenticator, whose keys verify identity assertions (required unless "
        "--insecure-local).",
    )
    assertion_refresh_seconds: float = setting(
        5.0, help="How long the Authenticator's keys and ended sessions are reused."
    )
    assertion_cache_entries: int = setting(
        100_000,
        help="Verified identity assertions remembered (a repeated one skips its signature "
        "check); 0 checks every call's signature.",
    )
    attachments: AttachmentSettings = group(AttachmentSettings)
    migrate: bool = setting(False, env="BUGLESS_MIGRATE", help="Apply migrations before serving.")
    grpc: TransferServerSettings = group(TransferServerSettings)
    log: LogSettings = group(LogSettings)

    def __post_init__(self) -> None:
        if len(self.storage.page_token_secret) < 16:
            raise ValueError(
                "--page-token-secret (BUGLESS_PAGE_TOKEN_SECRET) is required to serve: "
                "16 or more characters, the same on every replica"
            )
        if self.auth is None and not self.grpc.insecure_local:
            raise ValueError(
                "--auth HOST:PORT is required: the Model takes every caller from an "
                "identity assertion the Authenticator signed, and fetches its keys there "
                "(--insecure-local believes the caller a request names instead)"
            )
        if self.assertion_refresh_seconds <= 0:
            raise ValueError("--assertion-refresh-seconds must be more than 0")
        if self.assertion_cache_entries < 0:
            raise ValueError("--assertion-cache-entries must be 0 or more")
        if self.auth is not None and self.auth.ca is None and self.grpc.mutual_tls:
            # The Model's own certificate and CA are its client side too.
            object.__setattr__(
                self,
                "auth",
                dataclasses.replace(
                    self.auth,
                    ca=self.grpc.client_ca,
                    cert=self.grpc.tls_cert,
                    key=self.grpc.tls_key,
                ),
            )


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelMigrateSettings:
    """What ``bugless model migrate`` is configured with.

    Attributes:
        backend: The Model backend plugin whose migrations to apply.
        storage: The database (only its URL, schema, regions, survival
            goal and statement timeout matter here: the timeout bounds the
            batches of whole-table work after the files, which run without
            it).
        log: Log level and format (the migration Job's logs are read like
            the services').
    """

    backend: str = setting(
        "postgres",
        flag="--model",
        env="BUGLESS_MODEL",
        help="Model backend to use; `bugless plugins` lists the installed ones.",
    )
    storage: ModelSettings = group(ModelSettings)
    log: LogSettings = group(LogSettings)


def _backend_class(plugins: Plugins, name: str) -> type[ModelBackend]:
    try:
        return plugins.model_backends.get(name)
    except BuglessError as exc:
        raise click.UsageError(exc.message) from exc


@click.group("model")
def model_group() -> None:
    """Run the Model service (all tracker data)."""


@model_group.command("migrate")
@click.pass_obj
@settings_command(
    ModelMigrateSettings,
    env_prefix=ENV_PREFIX,
    only=(
        "backend",
        "storage.database_url",
        "storage.schema",
        "storage.regions",
        "storage.survival_goal",
        "storage.statement_timeout_seconds",
        "log.level",
        "log.json",
    ),
)
def migrate_command(plugins: Plugins, settings: ModelMigrateSettings) -> None:
    """Create or upgrade the database schema (safe to run from several replicas)."""
    from bugless_core import eventloop  # noqa: PLC0415 - asyncio, not for --help

    settings.log.configure()
    cls = _backend_class(plugins, settings.backend)
    try:
        version = eventloop.run(cls.migrate(settings.storage))
    except BuglessError as exc:
        # The documented statuses, as `bugless auth migrate`: a setting that
        # does not fit the server (regions, a survival goal, the cockroach
        # backend on PostgreSQL that is not SERIALIZABLE) is 2; the database
        # away, a newer schema, a migration file failing on the data it
        # meets (bugless_core.migrations: FailedPrecondition, not the
        # operator's input) or anything else 1.
        fail(exc.message, start_exit_status(exc))
    click.echo(f"schema {settings.storage.schema!r} is at version {version} ({cls.package_name()})")


@model_group.command("serve")
@click.pass_obj
@settings_command(
    ModelServeSettings, env_prefix=ENV_PREFIX, defaults={"grpc.port": DEFAULT_MODEL_PORT}
)
def serve_command(plugins: Plugins, settings: ModelServeSettings) -> None:
    """Serve bugless.v1.Model over gRPC until SIGTERM."""
    from bugless_core import eventloop  # noqa: PLC0415 - asyncio, not for --help
    from bugless_core.model.runner import serve_model  # noqa: PLC0415

    settings.log.configure()
    cls = _backend_class(plugins, settings.backend)
    try:
        status = eventloop.run(
            serve_model(
                plugins,
                cls,
                settings.storage,
                settings.grpc,
                migrate=settings.migrate,
                attachments=settings.attachments,
                auth=settings.auth,
                assertion_refresh_seconds=settings.assertion_refresh_seconds,
                assertion_cache_entries=settings.assertion_cache_entries,
            )
        )
    except BuglessError as exc:
        # As migrate: a setting that does not fit the server (a locality or
        # regions on PostgreSQL, the cockroach backend on PostgreSQL that is
        # not SERIALIZABLE) is 2; the database away or any other failed start 1.
        fail(exc.message, start_exit_status(exc))
    raise SystemExit(status)
