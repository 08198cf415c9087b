"""The ``bugless`` command: a click group that installed packages extend.

The root knows nothing of the services; every subcommand (``model``, ``auth``,
``web``, ``api``, ``issue``, ``dev``, ``query``) is added by a plugin through
``bugless_register_commands``. Exit codes scripts can rely on: 0 success, 1 a
bugless error reported by a service, 2 bad usage or configuration.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from typing import NoReturn

import click

from bugless_core.errors import BuglessError
from bugless_core.plugins import PluginLoadError, Plugins, load_plugins
from bugless_core.registry import DuplicateRegistrationError

EXIT_ERROR = 1
EXIT_USAGE = 2


def installed_packages() -> list[tuple[str, str]]:
    """Every installed distribution named bugless-*, with its version."""
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


class CommandGroup(click.Group):
    """The root ``bugless`` group: commands added as objects or by reference.

    ``bugless web serve`` runs in a process that has loaded every plugin and
    assembled this tree, so a plugin whose command module imports its service
    (the Authenticator's store and asyncpg, the local stack) would make every
    other service import it too. :meth:`add_lazy_command` names the command
    by ``module:attribute`` instead; the module is imported when the command
    is run, or listed by ``bugless --help``.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        """Create the group (arguments as :class:`click.Group`)."""
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy_commands: dict[str, str] = {}

    def add_lazy_command(self, name: str, reference: str) -> None:
        """Add the command ``reference`` (``module:attribute``) as ``name``, imported on use."""
        self.lazy_commands[name] = reference

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command name, imported or not."""
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command ``cmd_name``; a lazy one is imported now and kept."""
        reference = self.lazy_commands.pop(cmd_name, None)
        if reference is not None:
            module, _, attribute = reference.partition(":")
            command = getattr(importlib.import_module(module), attribute)
            if not isinstance(command, click.Command):
                msg = f"the bugless command {cmd_name!r} ({reference}) is not a click command"
                raise TypeError(msg)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)


def build_cli(plugins: Plugins) -> CommandGroup:
    """Assemble the command tree for one plugin manager."""

    @click.group(
        cls=CommandGroup,
        context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
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


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``bugless`` console script."""
    try:
        plugins = load_plugins()
    except (PluginLoadError, DuplicateRegistrationError) as exc:
        fail(str(exc))
    cli = build_cli(plugins)
    try:
        cli.main(args=argv, prog_name="bugless", standalone_mode=True)
    except BuglessError as exc:
        fail(exc.message, EXIT_ERROR)
