"""Hook implementations of bugless-web (the ``bugless`` entry point names this module).

Registration only: ``bugless web serve``. The command imports the web stack
lazily, so ``bugless --help`` does not load Litestar.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bugless_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from bugless_core.cli import CommandGroup


@hookimpl
def bugless_register_commands(cli: CommandGroup) -> None:
    """Add ``bugless web``."""
    cli.add_lazy_command(
        "web",
        "bugless_web.commands:web_group",
        "Run the web frontend (server-rendered pages for people).",
    )
