"""The ``bugless`` command: a click group that installed packages extend.

The root knows nothing of the services; every subcommand (``model``, ``auth``,
``web``, ``api``, ``issue``, ``dev``, ``query``) is added by a plugin through
``bugless_register_commands``. Exit codes scripts can rely on: 0 success, 1 a
bugless error reported by a service, 2 bad usage or configuration.
"""

from __future__ import annotations

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


def build_cli(plugins: Plugins) -> click.Group:
    """Assemble the command tree for one plugin manager."""

    @click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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
