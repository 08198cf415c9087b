"""``bugless auth serve|migrate|keygen`` and ``bugless auth user add|passwd|disable``.

Every option reads a flag or a ``BUGLESS_AUTH_*`` variable. The user commands
talk to the database directly (they are how the first administrator exists,
before anyone could call CreateLocalUser with a token).
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from bugless_auth.passwords import PasswordHashes
from bugless_auth.policy import PolicyError, load_policy
from bugless_auth.settings import AuthSettings, PasswordHashing, ThrottleSettings
from bugless_auth.store import IdentityStore, UserRecord
from bugless_auth.tokens import generate_ed25519_pem
from bugless_core import eventloop
from bugless_core.cli_options import grpc_server_options, grpc_settings_from, log_options
from bugless_core.errors import BuglessError
from bugless_core.plugins import Plugins

DEFAULT_AUTH_PORT = 50052
F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return eventloop.run(coro)
    except BuglessError as exc:
        raise click.ClickException(exc.message) from exc


def _database_options(fn: F) -> F:
    fn = click.option(
        "--schema",
        envvar="BUGLESS_AUTH_SCHEMA",
        default="bugless_auth",
        show_default=True,
        help="PostgreSQL schema of the Authenticator's tables [env BUGLESS_AUTH_SCHEMA].",
    )(fn)
    return click.option(
        "--database-url",
        envvar=["BUGLESS_AUTH_DATABASE_URL", "BUGLESS_DATABASE_URL"],
        required=True,
        help="postgresql://user:pass@host:port/db [env BUGLESS_AUTH_DATABASE_URL].",
    )(fn)


def _hashing_options(fn: F) -> F:
    defaults = PasswordHashing()
    for name, default, what in reversed(
        [
            ("time-cost", defaults.time_cost, "passes"),
            ("memory-kib", defaults.memory_kib, "memory per hash in KiB"),
            ("parallelism", defaults.parallelism, "lanes"),
        ]
    ):
        env = f"BUGLESS_AUTH_ARGON2_{name.replace('-', '_').upper()}"
        fn = click.option(
            f"--argon2-{name}",
            envvar=env,
            type=click.IntRange(min=1),
            default=default,
            show_default=True,
            help=f"argon2id {what} for new password hashes [env {env}].",
        )(fn)
    return fn


def _hashing_from(params: dict[str, Any]) -> PasswordHashing:
    return PasswordHashing(
        time_cost=params.pop("argon2_time_cost"),
        memory_kib=params.pop("argon2_memory_kib"),
        parallelism=params.pop("argon2_parallelism"),
    )


def _parse_backend_options(values: tuple[str, ...]) -> dict[str, dict[str, str]]:
    options: dict[str, dict[str, str]] = {}
    for value in values:
        key, sep, setting = value.partition("=")
        name, dot, option = key.partition(".")
        if not sep or not dot or not name or not option:
            raise click.BadParameter(
                f"{value!r}: use NAME.KEY=VALUE, e.g. tls.mapping_file=/etc/bugless/certs.toml",
                param_hint="--authenticator-option",
            )
        options.setdefault(name.strip(), {})[option.strip().lower()] = setting
    return options


@click.group("auth")
def auth_group() -> None:
    """Run the Authenticator service and manage its local users."""


@auth_group.command("migrate")
@_database_options
def migrate_command(database_url: str, schema: str) -> None:
    """Create or upgrade the Authenticator's schema (safe from several replicas)."""
    version = _run(IdentityStore.migrate(database_url, schema))
    click.echo(f"schema {schema!r} is at version {version} (bugless-auth)")


@auth_group.command("keygen")
def keygen_command() -> None:
    """Print a new Ed25519 token signing key (PEM) for --token-key-file."""
    click.echo(generate_ed25519_pem().decode("ascii"), nl=False)


@auth_group.command("serve")
@click.option(
    "--authenticator",
    "authenticators",
    envvar="BUGLESS_AUTH_AUTHENTICATORS",
    default="local",
    show_default=True,
    help="Enabled backends, comma-separated, in the order password checks try them "
    "[env BUGLESS_AUTH_AUTHENTICATORS]; `bugless plugins` lists the installed ones.",
)
@click.option(
    "--authenticator-option",
    "backend_options",
    multiple=True,
    metavar="NAME.KEY=VALUE",
    help="A backend option (repeatable), e.g. tls.mapping_file=PATH; also read from "
    "BUGLESS_AUTH_<NAME>_<KEY> variables.",
)
@_database_options
@click.option(
    "--token-key-file",
    "token_keys",
    envvar="BUGLESS_AUTH_TOKEN_KEY_FILES",
    multiple=True,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Token key (repeatable; env: paths separated by ':'); the first signs, all verify. "
    "Ed25519 PEM, a JWK, or a 32+ byte secret (HS256).",
)
@click.option(
    "--token-ttl-seconds",
    envvar="BUGLESS_AUTH_TOKEN_TTL_SECONDS",
    type=click.FloatRange(min=1),
    default=AuthSettings.token_ttl_seconds,
    show_default=True,
    help="Lifetime of session tokens.",
)
@click.option(
    "--token-issuer",
    envvar="BUGLESS_AUTH_TOKEN_ISSUER",
    default=AuthSettings.token_issuer,
    show_default=True,
    help="`iss` of issued tokens.",
)
@click.option(
    "--cache-ttl-seconds",
    envvar="BUGLESS_AUTH_CACHE_TTL_SECONDS",
    type=click.FloatRange(min=0.001),
    default=AuthSettings.cache_ttl_seconds,
    show_default=True,
    help="How long user records and validated tokens are served from memory.",
)
@click.option(
    "--cache-max-entries",
    envvar="BUGLESS_AUTH_CACHE_MAX_ENTRIES",
    type=click.IntRange(min=1),
    default=AuthSettings.cache_max_entries,
    show_default=True,
    help="Users kept in memory (per cache, LRU).",
)
@click.option(
    "--policy",
    envvar="BUGLESS_AUTH_POLICY",
    default=None,
    help='Group to permissions, JSON/TOML inline or a file path, e.g. \'{"admins": ["admin"]}\' '
    "[env BUGLESS_AUTH_POLICY]. Default: admins get admin.",
)
@click.option(
    "--throttle-user-limit",
    envvar="BUGLESS_AUTH_THROTTLE_USER_LIMIT",
    type=click.IntRange(min=1),
    default=ThrottleSettings.per_user_limit,
    show_default=True,
    help="Failed password attempts per username per window.",
)
@click.option(
    "--throttle-address-limit",
    envvar="BUGLESS_AUTH_THROTTLE_ADDRESS_LIMIT",
    type=click.IntRange(min=1),
    default=ThrottleSettings.per_address_limit,
    show_default=True,
    help="Failed password attempts per client address per window.",
)
@click.option(
    "--throttle-window-seconds",
    envvar="BUGLESS_AUTH_THROTTLE_WINDOW_SECONDS",
    type=click.FloatRange(min=0.001),
    default=ThrottleSettings.window_seconds,
    show_default=True,
    help="The window the throttle limits refill over.",
)
@_hashing_options
@click.option(
    "--min-password-length",
    envvar="BUGLESS_AUTH_MIN_PASSWORD_LENGTH",
    type=click.IntRange(min=1),
    default=AuthSettings.min_password_length,
    show_default=True,
    help="Shortest password the local store accepts.",
)
@click.option(
    "--pool-max-size",
    envvar="BUGLESS_AUTH_POOL_MAX_SIZE",
    type=click.IntRange(min=1),
    default=AuthSettings.pool_max_size,
    show_default=True,
    help="Database connections per replica.",
)
@click.option(
    "--migrate/--no-migrate",
    envvar="BUGLESS_AUTH_MIGRATE",
    default=False,
    help="Apply migrations before serving.",
)
@grpc_server_options("auth", DEFAULT_AUTH_PORT)
@log_options
@click.pass_obj
def serve_command(plugins: Plugins, /, **params: Any) -> None:
    """Serve bugless.v1.Authenticator over gRPC until SIGTERM."""
    from bugless_auth.runner import serve_auth  # noqa: PLC0415
    from bugless_auth.service import options_from_environment  # noqa: PLC0415
    from bugless_core.logs import configure_logging  # noqa: PLC0415

    configure_logging(params.pop("log_level"), json=params.pop("log_json"))
    grpc_settings = grpc_settings_from(params)
    settings = settings_from(params, dict(os.environ), options_from_environment)
    for name in settings.authenticators:
        if name not in plugins.authenticators:
            plugins.authenticators.get(name)  # raises with the installed names
    _run(serve_auth(plugins, settings, grpc_settings, migrate=params["migrate"]))


def settings_from(
    params: dict[str, Any],
    environ: dict[str, str],
    env_options: Callable[[dict[str, str], list[str]], dict[str, dict[str, str]]],
) -> AuthSettings:
    """Build :class:`AuthSettings` from the serve command's parameters."""
    names = [n.strip() for n in params["authenticators"].split(",") if n.strip()]
    options = env_options(environ, names)
    for name, values in _parse_backend_options(params["backend_options"]).items():
        options.setdefault(name, {}).update(values)
    try:
        policy = load_policy(params["policy"]) if params["policy"] else None
    except PolicyError as exc:
        raise click.BadParameter(str(exc), param_hint="--policy") from exc
    try:
        return AuthSettings(
            database_url=params["database_url"],
            schema=params["schema"],
            authenticators=tuple(names),
            authenticator_options=options,
            token_keys=tuple(params["token_keys"]),
            token_ttl_seconds=params["token_ttl_seconds"],
            token_issuer=params["token_issuer"],
            cache_ttl_seconds=params["cache_ttl_seconds"],
            cache_max_entries=params["cache_max_entries"],
            policy=policy,
            throttle=ThrottleSettings(
                per_user_limit=params["throttle_user_limit"],
                per_address_limit=params["throttle_address_limit"],
                window_seconds=params["throttle_window_seconds"],
            ),
            hashing=_hashing_from(params),
            min_password_length=params["min_password_length"],
            pool_max_size=params["pool_max_size"],
        )
    except (ValueError, BuglessError) as exc:
        raise click.UsageError(str(exc)) from exc


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
@click.option(
    "--min-password-length",
    envvar="BUGLESS_AUTH_MIN_PASSWORD_LENGTH",
    type=click.IntRange(min=1),
    default=AuthSettings.min_password_length,
    show_default=True,
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_database_options
@_hashing_options
def user_add_command(**params: Any) -> None:
    """Add USERNAME to the local store; without a password, one is generated and printed."""
    from bugless_auth.service import create_local_user  # noqa: PLC0415

    username: str = params.pop("username")
    database_url: str = params.pop("database_url")
    schema: str = params.pop("schema")
    chosen = _read_password(params.pop("password"), params.pop("password_stdin"))
    generated = chosen is None
    if chosen is None:
        chosen = secrets.token_urlsafe(18)
    group_names = [g.strip() for g in params.pop("groups").split(",") if g.strip()]
    if params.pop("admin") and "admins" not in group_names:
        group_names.append("admins")
    display_name: str = params.pop("display_name")
    email: str = params.pop("email")
    bot: bool = params.pop("bot")
    min_password_length: int = params.pop("min_password_length")
    as_json: bool = params.pop("as_json")
    hashes = PasswordHashes(_hashing_from(params))

    async def add() -> UserRecord:
        store = await IdentityStore.open(database_url, schema, pool_max_size=1)
        try:
            return await create_local_user(
                store,
                hashes,
                username=username,
                display_name=display_name,
                email=email,
                password=chosen,
                groups=group_names,
                min_password_length=min_password_length,
                bot=bot,
            )
        finally:
            await store.close()

    record = _run(add())
    _print_user(record, as_json, chosen if generated else None)


@user_group.command("passwd")
@click.argument("username")
@_password_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_database_options
@_hashing_options
def user_passwd_command(**params: Any) -> None:
    """Set USERNAME's local password; without one, one is generated and printed."""
    username: str = params.pop("username")
    database_url: str = params.pop("database_url")
    schema: str = params.pop("schema")
    as_json: bool = params.pop("as_json")
    chosen = _read_password(params.pop("password"), params.pop("password_stdin"))
    generated = chosen is None
    if chosen is None:
        chosen = secrets.token_urlsafe(18)
    hashes = PasswordHashes(_hashing_from(params))

    async def change() -> UserRecord:
        hashes.check_acceptable(chosen, 1)
        store = await IdentityStore.open(database_url, schema, pool_max_size=1)
        try:
            return await store.set_local_password(username, await hashes.hash(chosen))
        finally:
            await store.close()

    record = _run(change())
    _print_user(record, as_json, chosen if generated else None)


@user_group.command("disable")
@click.argument("username")
@click.option("--enable", is_flag=True, help="Re-enable instead.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_database_options
def user_disable_command(
    username: str, enable: bool, as_json: bool, database_url: str, schema: str
) -> None:
    """Disable USERNAME (any authenticator's user): sign-ins and tokens stop working."""

    async def apply() -> UserRecord:
        store = await IdentityStore.open(database_url, schema, pool_max_size=1)
        try:
            return await store.set_disabled(username, not enable)
        finally:
            await store.close()

    _print_user(_run(apply()), as_json)
