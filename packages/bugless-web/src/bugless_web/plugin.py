"""Hook implementations of bugless-web (the ``bugless`` entry point names this module).

Registration only: ``bugless web serve``. The command imports the web stack
lazily, so ``bugless --help`` does not load Litestar.
"""

from __future__ import annotations

import click

from bugless_core.hookspecs import hookimpl


@hookimpl
def bugless_register_commands(cli: click.Group) -> None:
    """Add ``bugless web``."""
    from bugless_web.commands import web_group  # noqa: PLC0415

    cli.add_command(web_group)
