"""How every ``bugless auth user`` command reaches the store, and what they share.

A command's work runs on a one-connection store of the settings' database
(:func:`with_store`), waiting for a lock as long as ``--lock-wait-seconds``
says and naming the field at fault by the command's argument or option;
the options several commands take (``--log-*``, :func:`log_options`, which
every one of them has) and the user they print are here too.
Like :mod:`bugless_auth.user_commands`, it imports the store (asyncpg) and
the lock waits only when a command runs, so ``--help`` loads neither.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import secrets
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import click

from bugless_auth.commands import ENV_PREFIX, run
from bugless_auth.settings import AuthSettings
from bugless_core.errors import BuglessError
from bugless_core.logs import LogSettings
from bugless_core.settings import group, settings_command

if TYPE_CHECKING:
    from bugless_auth.store import IdentityStore, UserRecord

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

#: How long a user command waits for a lock by default (``--lock-wait-seconds``,
#: :mod:`bugless_auth.lock_waits`).
LOCK_WAIT_SECONDS = 30.0


def read_password(password: str | None, password_stdin: bool) -> str | None:
    """The password given: ``--password``'s, or stdin's first line with ``--password-stdin``."""
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return password


def print_user(
    record: UserRecord,
    as_json: bool,
    password: str | None = None,
    *,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Print ``record`` (and a generated ``password``) as lines of ``key: value``, or JSON."""
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
        data.update(extra or {})
        click.echo(json.dumps(data, indent=2))
        return
    for key, value in data.items():
        shown = ",".join(value) if isinstance(value, list) else value
        click.echo(f"{key}: {shown}")


def password_option(password_stdin: bool) -> str:
    """The option the password came by, which a refusal of it names."""
    return "--password-stdin" if password_stdin else "--password"


def in_option_terms(exc: BuglessError, option_names: Mapping[str, str]) -> BuglessError:
    """``exc`` with its leading field (``username: ...``) named as the option that set it.

    The checks these commands share with the Authenticator's gRPC calls name
    the request's field (``username``, ``password``); whoever typed
    ``bugless auth user add`` reads ``USERNAME: ...`` or ``--password: ...``.
    """
    field, said, problem = exc.message.partition(": ")
    option = option_names.get(field) if said else None
    if option is None:
        return exc
    return type(exc)(f"{option}: {problem}", reason=exc.reason, metadata=exc.metadata)


def with_store(
    settings: AuthSettings,
    work: Callable[[IdentityStore], Awaitable[T]],
    *,
    command: str,
    lock_wait_seconds: float,
    option_names: Mapping[str, str],
) -> T:
    """Run ``work`` on a one-connection store of ``settings``' database, closed after.

    A lock it needs is waited for ``lock_wait_seconds`` at most, saying on
    stderr what holds it (:mod:`bugless_auth.lock_waits`); then the command
    fails having changed nothing. A refusal names the field at fault by the
    command's argument or option (``option_names``: field -> option).
    """
    from bugless_auth import lock_waits  # noqa: PLC0415 - module docstring
    from bugless_auth.store import IdentityStore  # noqa: PLC0415
    from bugless_core.errors import Unavailable  # noqa: PLC0415

    async def go() -> T:
        store = await IdentityStore.open(
            settings.database_url,
            settings.schema,
            pool_max_size=1,
            dialect=settings.database_dialect,
            session_settings=lock_waits.session_settings(command, lock_wait_seconds),
        )
        try:
            return await work(store)
        finally:
            await store.close()

    async def named() -> T:
        try:
            return await bounded()
        except BuglessError as exc:
            raise in_option_terms(exc, option_names) from None

    async def bounded() -> T:
        try:
            return await lock_waits.said_while_waiting(
                go(),
                database_url=settings.database_url,
                command=command,
                lock_wait_seconds=lock_wait_seconds,
                say=lambda line: click.echo(line, err=True),
            )
        except Exception as exc:
            if not lock_waits.gave_up_on_a_lock(exc):
                raise
            raise Unavailable(
                f"gave up after waiting {lock_wait_seconds:g} s for a lock another transaction "
                "holds on the Authenticator's tables; nothing was changed. Retry once it has "
                "ended, or wait longer with --lock-wait-seconds"
            ) from exc

    return run(named(), statuses=True)


def lock_wait_option(fn: F) -> F:
    """``--lock-wait-seconds``, which :func:`with_store` waits for a lock at most."""
    return click.option(
        "--lock-wait-seconds",
        type=click.FloatRange(min=0, min_open=True),
        default=LOCK_WAIT_SECONDS,
        show_default=True,
        envvar="BUGLESS_AUTH_LOCK_WAIT_SECONDS",
        help="How long to wait for a lock another transaction holds (naming it on stderr) "
        "before giving up, changing nothing.",
    )(fn)


@dataclasses.dataclass(frozen=True, kw_only=True)
class CommandLogSettings:
    """How a ``bugless auth user`` command logs (``--log-level``, ``--log-json/--log-text``).

    Attributes:
        log: The serve commands' log settings (and variables), so that a
            deployment that sets ``BUGLESS_LOG_JSON`` for its services gets
            the same lines from the commands its operators run.
    """

    log: LogSettings = group(LogSettings)


def log_options(fn: Callable[..., T]) -> Callable[..., T]:
    """Give a user command the ``--log-*`` options and log as they say before it runs.

    What these commands do to a person (a session ended, a certificate
    revoked, an account disabled, renamed or merged) is logged at INFO as
    when the Authenticator does it for an RPC; without a handler those lines
    reached only Python's last resort, which drops INFO, and the only record
    of an operator's action was the database row. They go to stderr, as the
    services' do, so that stdout keeps the command's answer (``--json``).
    Apply it above the command's ``settings_command``.
    """

    @functools.wraps(fn)
    def configured(*args: Any, **params: Any) -> T:
        *passed, settings = args
        settings.log.configure()
        return fn(*passed, **params)

    return settings_command(CommandLogSettings, env_prefix=ENV_PREFIX)(configured)


def password_options(fn: F) -> F:
    """``--password`` and ``--password-stdin`` of the commands that set one."""
    fn = click.option(
        "--password-stdin", is_flag=True, help="Read the password from the first line of stdin."
    )(fn)
    return click.option(
        "--password",
        envvar="BUGLESS_AUTH_USER_PASSWORD",
        default=None,
        help="The password (prefer --password-stdin: flags show up in `ps`).",
    )(fn)


def chosen_password(password: str | None, password_stdin: bool) -> tuple[str, bool]:
    """The password given, or a new random one; and whether it was generated."""
    chosen = read_password(password, password_stdin)
    if chosen is None:
        return secrets.token_urlsafe(18), True
    return chosen, False
