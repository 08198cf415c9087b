"""``bugless auth serve``, ``bugless auth migrate`` and ``bugless auth keygen``.

Named by reference from :mod:`bugless_auth.commands`. This module imports the
settings only: the store, the server and the key code are imported in the
command that runs them, so ``bugless auth serve --help`` shows every flag
without loading asyncpg, password hashing or cryptography.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import click

from bugless_auth.commands import DATABASE_SETTINGS, DEFAULT_AUTH_PORT, ENV_PREFIX, run
from bugless_auth.settings import AuthSettings, options_from_environment
from bugless_core.errors import BuglessError
from bugless_core.grpc import GrpcServerSettings
from bugless_core.logs import LogSettings
from bugless_core.plugins import Plugins
from bugless_core.setting_files import SettingFileError, SettingFileRefused, check_setting_file
from bugless_core.settings import group, setting, settings_command


@dataclasses.dataclass(frozen=True, kw_only=True)
class AuthServeSettings:
    """What ``bugless auth serve`` is configured with.

    Attributes:
        auth: The Authenticator itself (database, backends, tokens, policy).
        migrate: Apply migrations before serving (one-replica setups; a
            deployment runs ``bugless auth migrate`` as a job instead).
        grpc: Listening, TLS, metrics, drain and the ready file.
        log: Log level and format.
    """

    auth: AuthSettings = group(AuthSettings)
    migrate: bool = setting(False, help="Apply migrations before serving.")
    grpc: GrpcServerSettings = group(GrpcServerSettings)
    log: LogSettings = group(LogSettings)

    def __post_init__(self) -> None:
        if not self.auth.token_keys:
            raise ValueError(
                "--token-key-file is required to serve (or set BUGLESS_AUTH_TOKEN_KEY_FILES): "
                "`bugless auth keygen` prints a new key"
            )


def with_environment_options(
    settings: AuthSettings,
    environ: Mapping[str, str],
    env_options: Callable[[Mapping[str, str], list[str]], dict[str, dict[str, str]]],
) -> AuthSettings:
    """``settings`` with the enabled backends' ``BUGLESS_AUTH_<NAME>_<KEY>`` variables.

    A backend's options are open-ended (each plugin has its own), so they
    cannot be declared as fields; the variables are read for the enabled
    backends only, and an ``--authenticator-option`` flag wins over them.
    """
    options = env_options(environ, list(settings.authenticators))
    for name, values in settings.authenticator_options.items():
        options.setdefault(name, {}).update(values)
    return dataclasses.replace(settings, authenticator_options=options)


def check_backend_files(
    plugins: Plugins, settings: AuthSettings, *, flagged: Mapping[str, Mapping[str, str]]
) -> None:
    """Read and check every file an enabled backend's options name, before anything opens.

    Each backend declares its file options (``file_options``); checking
    them here, not in its ``open``, refuses a wrong file before the store's
    pool connects, naming the flag or the variable it came from.

    Args:
        plugins: Where the enabled backends are registered.
        settings: The settings, with the backends' variables merged in.
        flagged: The options given as ``--authenticator-option`` (the rest
            came from ``BUGLESS_AUTH_<NAME>_<KEY>`` variables).

    Raises:
        SettingFileError: a file cannot be read or holds the wrong content.
    """
    for name in settings.authenticators:
        options = settings.authenticator_options.get(name, {})
        for key, content in plugins.authenticators.get(name).file_options.items():
            value = options.get(key)
            if not value:
                continue
            given_as = (
                f"--authenticator-option {name}.{key}"
                if key in flagged.get(name, {})
                else f"BUGLESS_AUTH_{name.upper()}_{key.upper()}"
            )
            check_setting_file(given_as, Path(str(value)), content)


@dataclasses.dataclass(frozen=True, kw_only=True)
class AuthMigrateSettings:
    """What ``bugless auth migrate`` is configured with.

    Attributes:
        auth: The Authenticator's database (only its URL, schema and dialect matter).
        log: Log level and format: the migrations applied are logged, as the
            Model's are (``bugless model migrate``), for a migration Job's log.
    """

    auth: AuthSettings = group(AuthSettings)
    log: LogSettings = group(LogSettings)


@click.command("migrate")
@settings_command(
    AuthMigrateSettings,
    env_prefix=ENV_PREFIX,
    only=(*(f"auth.{name}" for name in DATABASE_SETTINGS), "log.level", "log.json"),
)
def migrate_command(settings: AuthMigrateSettings) -> None:
    """Create or upgrade the Authenticator's schema (safe from several replicas)."""
    from bugless_auth.store import IdentityStore  # noqa: PLC0415 - the module docstring

    settings.log.configure()
    auth = settings.auth
    version = run(
        IdentityStore.migrate(auth.database_url, auth.schema, dialect=auth.database_dialect),
        starting=True,
    )
    click.echo(f"schema {auth.schema!r} is at version {version} (bugless-auth)")


@click.command("keygen")
def keygen_command() -> None:
    """Print a new Ed25519 token signing key (PEM) for --token-key-file."""
    from bugless_auth.tokens import generate_ed25519_pem  # noqa: PLC0415

    click.echo(generate_ed25519_pem().decode("ascii"), nl=False)


@click.command("serve")
@click.pass_obj
@settings_command(
    AuthServeSettings, env_prefix=ENV_PREFIX, defaults={"grpc.port": DEFAULT_AUTH_PORT}
)
def serve_command(plugins: Plugins, settings: AuthServeSettings) -> None:
    """Serve bugless.v1.Authenticator over gRPC until SIGTERM."""
    from bugless_auth.runner import serve_auth  # noqa: PLC0415

    settings.log.configure()
    for name in settings.auth.authenticators:
        try:
            plugins.authenticators.get(name)
        except BuglessError as exc:  # names the installed ones
            raise click.UsageError(exc.message) from exc
    auth = with_environment_options(settings.auth, os.environ, options_from_environment)
    try:
        check_backend_files(plugins, auth, flagged=settings.auth.authenticator_options)
    except SettingFileError as exc:
        raise SettingFileRefused(exc) from exc
    # A setting the database cannot run (--database-dialect) is bad configuration,
    # 2, as for `auth migrate` and `model serve`; the database away or any other
    # failed start 1 (never 3 or 4: a server is asked about nothing).
    status = run(serve_auth(plugins, auth, settings.grpc, migrate=settings.migrate), starting=True)
    raise SystemExit(status)
