"""``bugless auth serve|migrate|keygen`` and ``bugless auth user add|passwd|disable``.

Every setting reads a flag or a ``BUGLESS_AUTH_*`` variable, declared once on
:class:`AuthSettings` (and :class:`AuthServeSettings` for what only serving
needs); each command receives the typed object. The user commands talk to the
database directly (they are how the first administrator exists, before anyone
could call CreateLocalUser with a token).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import secrets
import sys
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

import click

from bugless_auth.passwords import PasswordHashes
from bugless_auth.sessions import SessionStore
from bugless_auth.settings import AuthSettings
from bugless_auth.store import IdentityStore, UserRecord
from bugless_auth.tokens import generate_ed25519_pem
from bugless_core import eventloop
from bugless_core.errors import BuglessError
from bugless_core.grpc import GrpcServerSettings
from bugless_core.logs import LogSettings
from bugless_core.plugins import Plugins
from bugless_core.settings import group, setting, settings_command

DEFAULT_AUTH_PORT = 50052
ENV_PREFIX = "BUGLESS_AUTH_"
F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

#: The settings the commands that only open the database read.
_DATABASE = ("database_url", "schema", "database_dialect")
#: And those that also hash passwords.
_HASHING = ("hashing.time_cost", "hashing.memory_kib", "hashing.parallelism")


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


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return eventloop.run(coro)
    except BuglessError as exc:
        raise click.ClickException(exc.message) from exc


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


@click.group("auth")
def auth_group() -> None:
    """Run the Authenticator service and manage its local users."""


@auth_group.command("migrate")
@settings_command(AuthSettings, env_prefix=ENV_PREFIX, only=_DATABASE)
def migrate_command(settings: AuthSettings) -> None:
    """Create or upgrade the Authenticator's schema (safe from several replicas)."""
    version = _run(
        IdentityStore.migrate(
            settings.database_url, settings.schema, dialect=settings.database_dialect
        )
    )
    click.echo(f"schema {settings.schema!r} is at version {version} (bugless-auth)")


@auth_group.command("keygen")
def keygen_command() -> None:
    """Print a new Ed25519 token signing key (PEM) for --token-key-file."""
    click.echo(generate_ed25519_pem().decode("ascii"), nl=False)


@auth_group.command("serve")
@click.pass_obj
@settings_command(
    AuthServeSettings, env_prefix=ENV_PREFIX, defaults={"grpc.port": DEFAULT_AUTH_PORT}
)
def serve_command(plugins: Plugins, settings: AuthServeSettings) -> None:
    """Serve bugless.v1.Authenticator over gRPC until SIGTERM."""
    from bugless_auth.runner import serve_auth  # noqa: PLC0415
    from bugless_auth.service import options_from_environment  # noqa: PLC0415

    settings.log.configure()
    for name in settings.auth.authenticators:
        try:
            plugins.authenticators.get(name)
        except BuglessError as exc:  # names the installed ones
            raise click.UsageError(exc.message) from exc
    auth = with_environment_options(settings.auth, os.environ, options_from_environment)
    _run(serve_auth(plugins, auth, settings.grpc, migrate=settings.migrate))


# ---- bugless auth user ... ----


@auth_group.group("user")
def user_group() -> None:
    """Manage users of the local store (connects to the database directly)."""


def _read_password(password: str | None, password_stdin: bool) -> str | None:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return password


def _print_user(record: UserRecord, as_json: bool, password: str | None = None) -> None:
    data: dict[str, Any] = {
        "user_id": record.user_id,
        "username": record.username,
        "display_name": record.display_name,
        "email": record.email,
        "groups": list(record.groups),
        "disabled": record.disabled,
        "bot": record.bot,
    }
    if password is not None:
        data["password"] = password
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for key, value in data.items():
        shown = ",".join(value) if isinstance(value, list) else value
        click.echo(f"{key}: {shown}")


def _password_options(fn: F) -> F:
    fn = click.option(
        "--password-stdin", is_flag=True, help="Read the password from the first line of stdin."
    )(fn)
    return click.option(
        "--password",
        envvar="BUGLESS_AUTH_USER_PASSWORD",
        default=None,
        help="The password (prefer --password-stdin: flags show up in `ps`).",
    )(fn)


def _chosen_password(password: str | None, password_stdin: bool) -> tuple[str, bool]:
    """The password given, or a new random one; and whether it was generated."""
    chosen = _read_password(password, password_stdin)
    if chosen is None:
        return secrets.token_urlsafe(18), True
    return chosen, False


@user_group.command("add")
@click.argument("username")
@click.option("--display-name", default="", help="Name shown on user chips (default: username).")
@click.option("--email", default="", help="Mail address.")
@click.option("--groups", default="", help="Comma-separated group names, e.g. triagers,oncall.")
@click.option(
    "--admin", is_flag=True, help="Add to the group `admins` (the default policy's admin)."
)
@click.option("--bot", is_flag=True, help="Mark as a machine account.")
@_password_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@settings_command(
    AuthSettings, env_prefix=ENV_PREFIX, only=(*_DATABASE, "min_password_length", *_HASHING)
)
def user_add_command(
    settings: AuthSettings,
    *,
    username: str,
    display_name: str,
    email: str,
    groups: str,
    admin: bool,
    bot: bool,
    password: str | None,
    password_stdin: bool,
    as_json: bool,
) -> None:
    """Add USERNAME to the local store; without a password, one is generated and printed."""
    from bugless_auth.user_admin import create_local_user  # noqa: PLC0415

    chosen, generated = _chosen_password(password, password_stdin)
    group_names = [g.strip() for g in groups.split(",") if g.strip()]
    if admin and "admins" not in group_names:
        group_names.append("admins")
    hashes = PasswordHashes(settings.hashing)

    async def add() -> UserRecord:
        store = await IdentityStore.open(
            settings.database_url,
            settings.schema,
            pool_max_size=1,
            dialect=settings.database_dialect,
        )
        try:
            return await create_local_user(
                store,
                hashes,
                username=username,
                display_name=display_name,
                email=email,
                password=chosen,
                groups=group_names,
                min_password_length=settings.min_password_length,
                bot=bot,
            )
        finally:
            await store.close()

    record = _run(add())
    _print_user(record, as_json, chosen if generated else None)


@user_group.command("set-password")
@click.argument("username")
@_password_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@settings_command(AuthSettings, env_prefix=ENV_PREFIX, only=(*_DATABASE, *_HASHING))
def user_passwd_command(
    settings: AuthSettings,
    *,
    username: str,
    password: str | None,
    password_stdin: bool,
    as_json: bool,
) -> None:
    """Set USERNAME's local password; without one, one is generated and printed.

    This is how a lost password (the administrator's too) is replaced: it
    writes the Authenticator's database directly, so it needs no sign-in.
    """
    chosen, generated = _chosen_password(password, password_stdin)
    hashes = PasswordHashes(settings.hashing)

    async def change() -> UserRecord:
        hashes.check_acceptable(chosen, 1)
        store = await IdentityStore.open(
            settings.database_url,
            settings.schema,
            pool_max_size=1,
            dialect=settings.database_dialect,
        )
        try:
            return await store.set_local_password(username, await hashes.hash(chosen))
        finally:
            await store.close()

    record = _run(change())
    _print_user(record, as_json, chosen if generated else None)


# The command's first name, kept for scripts written against it.
_PASSWD_ALIAS = copy.copy(user_passwd_command)
_PASSWD_ALIAS.hidden = True
user_group.add_command(_PASSWD_ALIAS, "passwd")


@user_group.command("disable")
@click.argument("username")
@click.option("--enable", is_flag=True, help="Re-enable instead.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@settings_command(AuthSettings, env_prefix=ENV_PREFIX, only=_DATABASE)
def user_disable_command(
    settings: AuthSettings, *, username: str, enable: bool, as_json: bool
) -> None:
    """Disable USERNAME (any authenticator's user): sign-ins stop and their sessions end."""

    async def apply() -> UserRecord:
        store = await IdentityStore.open(
            settings.database_url,
            settings.schema,
            pool_max_size=1,
            dialect=settings.database_dialect,
        )
        try:
            record = await store.set_disabled(username, not enable)
            if not enable:
                await SessionStore(store).revoke_user(
                    record.user_id, "disabled with bugless auth user disable"
                )
            return record
        finally:
            await store.close()

    _print_user(_run(apply()), as_json)
