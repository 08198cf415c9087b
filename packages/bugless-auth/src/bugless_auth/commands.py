"""``bugless auth``: the group, its commands named by reference, and what they share.

``bugless auth serve|migrate|keygen`` are in :mod:`bugless_auth.serve_commands`,
``bugless auth user add|update|set-password|disable|sessions|certificates``
in :mod:`bugless_auth.user_commands`, ``bugless auth bot issue`` in
:mod:`bugless_auth.bot_commands`. The group names them by reference, so
``bugless auth --help`` imports neither, and each imports the Authenticator's
store (asyncpg), password hashing and token keys only in the command that
uses them: showing a command's help, or running ``keygen``, never loads the
server stack.

Every setting reads a flag or a ``BUGLESS_AUTH_*`` variable, declared once on
:class:`~bugless_auth.settings.AuthSettings` (and
:class:`~bugless_auth.serve_commands.AuthServeSettings` for what only serving
needs); each command receives the typed object.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

import click

from bugless_core.cli import (
    EXIT_CONFLICT,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    CommandGroup,
    exit_status_of,
    start_exit_status,
)
from bugless_core.errors import BuglessError

DEFAULT_AUTH_PORT = 50052
ENV_PREFIX = "BUGLESS_AUTH_"
T = TypeVar("T")

#: The settings the commands that only open the database read.
DATABASE_SETTINGS = ("database_url", "schema", "database_dialect")
#: And those that also hash passwords.
HASHING_SETTINGS = ("hashing.time_cost", "hashing.memory_kib", "hashing.parallelism")

#: ``bugless auth``'s commands: name -> (``module:attribute``, the short help
#: ``bugless auth --help`` lists it with, the first sentence of its docstring).
COMMANDS: dict[str, tuple[str, str]] = {
    "migrate": (
        "bugless_auth.serve_commands:migrate_command",
        "Create or upgrade the Authenticator's schema (safe from several replicas).",
    ),
    "keygen": (
        "bugless_auth.serve_commands:keygen_command",
        "Print a new Ed25519 token signing key (PEM) for --token-key-file.",
    ),
    "serve": (
        "bugless_auth.serve_commands:serve_command",
        "Serve bugless.v1.Authenticator over gRPC until SIGTERM.",
    ),
    "user": (
        "bugless_auth.user_commands:user_group",
        "Manage users of the local store (connects to the database directly).",
    ),
    "bot": (
        "bugless_auth.bot_commands:bot_group",
        "Give bots their client certificates (signed here, mapped in the tls mapping file).",
    ),
}


def run(coro: Coroutine[Any, Any, T], *, statuses: bool = False, starting: bool = False) -> T:
    """Run a command's coroutine; a bugless error becomes click's error message.

    It exits 1, or with ``statuses`` the status the error's kind has in the
    documented table (:func:`refusal`: 2 for a value refused, 3 not found, 4
    a name taken), which ``bugless auth user`` uses. With ``starting``
    (``migrate`` and ``serve``) only 2 or 1
    (:func:`bugless_core.cli.start_exit_status`): a setting the database
    cannot run (the dialect) exits 2, as ``bugless model serve`` does, and
    any other failed start 1, a NotFound or a Conflict included.
    """
    from bugless_core import eventloop  # noqa: PLC0415 - `bugless auth --help` runs none

    try:
        return eventloop.run(coro)
    except BuglessError as exc:
        if statuses or starting:
            raise refusal(exc, starting=starting) from exc
        raise click.ClickException(exc.message) from exc


def refusal(error: BuglessError, *, starting: bool = False) -> click.ClickException:
    """Click's error message for ``error``, exiting with its status in the documented table.

    The one mapping of ``bugless auth``'s commands that check their input
    themselves (``user``, ``bot issue``): :func:`bugless_core.cli.exit_status_of`
    decides, so a script tells a value refused (2) from a thing not there
    (3), a name taken (4) and anything else (1). With ``starting`` (a
    ``serve`` or ``migrate``), :func:`bugless_core.cli.start_exit_status`:
    2 or 1.
    """
    status = start_exit_status(error) if starting else exit_status_of(error)
    return _REFUSALS.get(status, click.ClickException)(error.message)


class _Usage(click.ClickException):
    """Click's error message, exiting 2: a value the command refuses."""

    exit_code = EXIT_USAGE


class _NotFound(click.ClickException):
    """Click's error message, exiting 3: a user (or session) that is not there."""

    exit_code = EXIT_NOT_FOUND


class _Conflict(click.ClickException):
    """Click's error message, exiting 4: a username (or a bot's certificate name) taken."""

    exit_code = EXIT_CONFLICT


#: The documented statuses (:func:`bugless_core.cli.exit_status_of`) other than 1.
_REFUSALS: dict[int, type[click.ClickException]] = {
    EXIT_USAGE: _Usage,
    EXIT_NOT_FOUND: _NotFound,
    EXIT_CONFLICT: _Conflict,
}


@click.group("auth", cls=CommandGroup)
def auth_group() -> None:
    """Run the Authenticator service and manage its local users."""


for _name, (_reference, _summary) in COMMANDS.items():
    auth_group.add_lazy_command(_name, _reference, _summary)
