"""The ``bugless`` command: a click group that installed packages extend.

The root knows nothing of the services; every subcommand (``model``, ``auth``,
``web``, ``api``, ``issue``, ``dev``, ``query``) is added by a plugin through
``bugless_register_commands``. The exit statuses scripts and supervisors can
rely on are :data:`EXIT_STATUSES`, which ``bugless --help`` and docs/cli.md
list.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from gettext import gettext
from typing import TYPE_CHECKING, Any, NoReturn

import click

from bugless_core.errors import (
    AlreadyExists,
    BuglessError,
    Conflict,
    ContentGone,
    InvalidArgument,
    NotFound,
)
from bugless_core.plugins import PluginLoadError, Plugins, load_plugins
from bugless_core.registry import DuplicateRegistrationError

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4

#: Every exit status a ``bugless`` command ends with, and what it means; one
#: table for ``bugless --help`` and docs/cli.md. 1 is also
#: :data:`bugless_core.exit_status.EXIT_CUT_AT_SIGNAL`: a supervisor reads a
#: ``serve`` process's 1 as "not a clean stop" either way.
EXIT_STATUSES: tuple[tuple[int, str], ...] = (
    (0, "success; a serve process stopped by a signal once its drain ended"),
    (
        EXIT_ERROR,
        "a bugless error: a service refused or failed the request (import: an issue the Model "
        "refused, whatever the refusal, stops the run there, what landed kept), or a service "
        "or a migration could not start, for any reason but bad configuration (serve and "
        "migrate exit 1 or 2, never 3 or 4); a serve process whose second SIGTERM/SIGINT cut "
        "calls or requests still running",
    ),
    (
        EXIT_USAGE,
        "bad usage or configuration (flags, a required option missing or a file an option "
        "names that cannot be read, settings the database cannot run, such as "
        "--database-dialect or --regions, credentials; a query that does not parse, in "
        "query explain and the client commands; a value auth user or auth bot issue "
        "refuses, such as a username it cannot take, a password too short or a "
        "--mapping-file it cannot write)",
    ),
    (
        EXIT_NOT_FOUND,
        "client commands, auth user and import: not found, or gone for good (a deleted or "
        "redacted attachment; a source that answers 404)",
    ),
    (
        EXIT_CONFLICT,
        "client commands, auth user, auth bot issue and import: conflict (a stale "
        "--expected-version, a name taken)",
    ),
    (130, "interrupted (Ctrl-C): issue watch, and import (the same command resumes it)"),
)


def exit_status_of(error: BuglessError, *, answered_by_service: bool = False) -> int:
    """The status of :data:`EXIT_STATUSES` a command ends with when ``error`` stops it.

    The one mapping for every command: a thing not there, or gone for good (a
    deleted or redacted attachment's content, which a script should not retry
    as it might a 1), is "not found"; a stale version or a name taken is a
    conflict; a value refused is bad usage; anything else (a service that
    failed, a user another authenticator holds, the database away) is 1.

    Args:
        error: What stopped the command.
        answered_by_service: Whether the command's errors may be a service's
            answers (the client commands, through the API). Then an
            :class:`InvalidArgument` is bad usage only when the client raised it
            of the command's own input (``metadata["origin"] == "client"``); one
            the service answered is the service refusing the request, 1. A
            command that checks its input itself (``bugless auth user``, ``auth
            migrate``, ``auth bot issue``) leaves it ``False``: whatever it
            refuses of its own arguments is bad usage.

    Returns:
        0 never; 1, 2, 3 or 4 as :data:`EXIT_STATUSES` documents them.
    """
    if isinstance(error, NotFound | ContentGone):
        return EXIT_NOT_FOUND
    if isinstance(error, AlreadyExists | Conflict):
        return EXIT_CONFLICT
    if isinstance(error, InvalidArgument) and (
        not answered_by_service or error.metadata.get("origin") == "client"
    ):
        return EXIT_USAGE
    return EXIT_ERROR


def start_exit_status(error: BuglessError) -> int:
    """The status a ``serve`` or ``migrate`` command ends with when ``error`` stops its start.

    A supervisor (Kubernetes, systemd, a Job's backoff) tells only a setting
    it must change (2: an :class:`InvalidArgument`, such as a dialect or a
    locality the database cannot run) from a start that failed (1: the
    database away, a newer schema, and anything else). Not found and
    conflict (3, 4) name what a client command or ``auth user`` was asked
    about; a server is asked about nothing, so a NotFound or a Conflict met
    while starting (a backend's, a plugin's) is a failed start, 1, as
    :data:`EXIT_STATUSES` says.
    """
    return EXIT_USAGE if isinstance(error, InvalidArgument) else EXIT_ERROR


def exit_statuses_help() -> str:
    r""":data:`EXIT_STATUSES` as the epilog of ``bugless --help``, wrapped by hand.

    Click rewraps an epilog's paragraphs into one; ``\b`` keeps these lines.
    """
    import textwrap  # noqa: PLC0415 - only when the root group is built

    lines = ["\b", "Exit statuses:"]
    for status, meaning in EXIT_STATUSES:
        lines += textwrap.wrap(
            meaning,
            width=92,
            initial_indent=f"{status:>5}  ",
            subsequent_indent=" " * 7,
            break_on_hyphens=False,  # never "--database-" and "dialect" on two lines
        )
    return "\n".join(lines)


def installed_packages() -> list[tuple[str, str]]:
    """Every installed distribution named bugless-*, with its version."""
    import importlib.metadata  # noqa: PLC0415 - `bugless --version` only

    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"] or ""
        if name.lower().startswith("bugless-"):
            found[name] = dist.version
    return sorted(found.items())


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    for name, version in installed_packages():
        click.echo(f"{name} {version}")
    ctx.exit()


@dataclass(frozen=True)
class LazyCommand:
    """A command added by reference: where it is, and what ``--help`` lists it as.

    Attributes:
        reference: ``module:attribute`` of the click command, imported when it is run.
        summary: The command's short help as its group's ``--help`` lists it (the
            first sentence of its docstring), so that listing imports nothing;
            ``None`` imports the command to list it.
    """

    reference: str
    summary: str | None = None

    def load(self, name: str) -> click.Command:
        """Import the command.

        Raises:
            TypeError: the reference names something that is not a click command.
        """
        module, _, attribute = self.reference.partition(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            msg = f"the bugless command {name!r} ({self.reference}) is not a click command"
            raise TypeError(msg)
        return command


class CommandGroup(click.Group):
    """A group whose commands may be added by reference, imported when run.

    ``bugless issue show`` (a script may run it hundreds of times) and
    ``bugless web serve`` run in a process that loaded every plugin and
    assembled this tree, so a command module that imports its service (the
    Authenticator's store and asyncpg, the web tier, the API's settings and
    the gRPC clients) would make every other command import it too.
    :meth:`add_lazy_command` names the command by ``module:attribute``
    instead: its module is imported when the command is run, or its own help
    shown, and ``--help`` lists it by the summary it was added with.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Create the group (arguments as :class:`click.Group`)."""
        super().__init__(*args, **kwargs)
        self.lazy_commands: dict[str, LazyCommand] = {}

    def add_lazy_command(self, name: str, reference: str, summary: str | None = None) -> None:
        """Add the command ``reference`` (``module:attribute``) as ``name``, imported on use.

        Args:
            name: The command's name in this group.
            reference: Where the command is: ``module:attribute``.
            summary: Its short help, exactly as ``--help`` would list the command
                (the first sentence of its docstring); without one, ``--help``
                imports the command to list it.
        """
        self.lazy_commands[name] = LazyCommand(reference, summary)

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command name, imported or not."""
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command ``cmd_name``; a lazy one is imported now and kept."""
        lazy = self.lazy_commands.pop(cmd_name, None)
        if lazy is not None:
            self.add_command(lazy.load(cmd_name), cmd_name)
        return super().get_command(ctx, cmd_name)

    def _listed_commands(self, ctx: click.Context) -> list[tuple[str, click.Command]]:
        """The commands to list, a lazy one with a summary as a stand-in, not imported.

        A stand-in command with the summary as its help gives the line the
        imported command would (click shortens both alike).
        """
        listed: list[tuple[str, click.Command]] = []
        for name in self.list_commands(ctx):
            lazy = self.lazy_commands.get(name)
            if lazy is not None and lazy.summary is not None:
                command: click.Command | None = click.Command(name, help=lazy.summary)
            else:
                command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                listed.append((name, command))
        return listed

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List the commands as :class:`click.Group` does, a lazy one by its summary."""
        commands = self._listed_commands(ctx)
        if not commands:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in commands)
        rows = [(name, command.get_short_help_str(limit)) for name, command in commands]
        with formatter.section(gettext("Commands")):
            formatter.write_dl(rows)

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        """Complete as :class:`click.Group` does, a lazy command by its summary.

        ``bugless <TAB>`` would otherwise import every command to offer its name.
        """
        from click.shell_completion import CompletionItem  # noqa: PLC0415

        commands = [
            CompletionItem(name, help=command.get_short_help_str())
            for name, command in self._listed_commands(ctx)
            if name.startswith(incomplete)
        ]
        return [*commands, *click.Command.shell_complete(self, ctx, incomplete)]


def build_cli(plugins: Plugins) -> CommandGroup:
    """Assemble the command tree for one plugin manager."""

    @click.group(
        cls=CommandGroup,
        context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
        epilog=exit_statuses_help(),
    )
    @click.option(
        "--version",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_print_version,
        help="Show every installed bugless package and its version.",
    )
    @click.pass_context
    def cli(ctx: click.Context) -> None:
        """bugless: an issue tracker with a web UI and a gRPC API.

        Installed packages add commands: bugless-model-postgres adds storage,
        bugless-auth adds `bugless auth`, bugless-web adds `bugless web`,
        bugless-api adds `bugless api` and the client commands.
        """
        ctx.obj = plugins

    plugins.manager.hook.bugless_register_commands(cli=cli)
    return cli


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print an error the way every command does and exit."""
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def credentials_refused(exc: BaseException) -> str | None:
    """What to say when the database refused to let a command in; ``None`` for anything else.

    A wrong user or password in a database URL (SQLSTATE class 28, e.g.
    ``28P01`` password authentication failed, ``28000`` no such role) is
    neither an outage the services translate nor a bug: it is the
    operator's configuration, and deserves one line saying so rather than
    a driver's traceback from ``migrate``, ``serve`` or ``auth user``.
    """
    sqlstate = getattr(exc, "sqlstate", None)
    if not isinstance(sqlstate, str) or not sqlstate.startswith("28"):
        return None
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (
        f"the database refused the connection: {detail} (SQLSTATE {sqlstate}); check the "
        "user name and password of the database URL (--database-url or its environment variable)"
    )


#: The commands that start a service or bring its schema up: what stops them
#: is a failed start (:func:`start_exit_status`), whichever package adds them.
_STARTING_COMMANDS = frozenset({"serve", "migrate"})


def _starts_a_service(cli: click.Group, args: list[str]) -> bool:
    """Whether ``args`` run a ``serve`` or ``migrate`` command (``web serve``, ``model migrate``).

    Read from the words before the first option, as click resolved them; a
    word that names no command (click reported it already) is not one.
    """
    command: click.Command = cli
    ctx = click.Context(cli, info_name="bugless")
    name = ""
    for token in args:
        if not isinstance(command, click.Group) or token.startswith("-"):
            break
        found = command.get_command(ctx, token)
        if found is None:
            return False
        command, name = found, token
    return not isinstance(command, click.Group) and name in _STARTING_COMMANDS


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``bugless`` console script.

    A bugless error a command did not handle itself ends it with its status
    in :data:`EXIT_STATUSES` (:func:`exit_status_of`, as an error a service
    may have answered), so a command that lets a refusal escape still exits
    by the documented table; one that escapes a ``serve`` or ``migrate``
    ends a failed start, 1 or 2 (:func:`start_exit_status`), whichever
    package's command it is.
    """
    try:
        plugins = load_plugins()
    except (PluginLoadError, DuplicateRegistrationError) as exc:
        fail(str(exc))
    cli = build_cli(plugins)
    try:
        cli.main(args=argv, prog_name="bugless", standalone_mode=True)
    except BuglessError as exc:
        if _starts_a_service(cli, sys.argv[1:] if argv is None else argv):
            fail(exc.message, start_exit_status(exc))
        # What a command let escape may be a service's answer (``import``
        # stops at the Model's refusal of an item): only a refusal marked as
        # the command's own input is bad usage; not found and conflict keep
        # their statuses.
        fail(exc.message, exit_status_of(exc, answered_by_service=True))
    except Exception as exc:
        refused = credentials_refused(exc)
        if refused is None:
            raise
        fail(refused, EXIT_USAGE)
