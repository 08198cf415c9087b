"""Hook implementations of bugless-dev (the ``bugless`` entry point names this module).

Registration only: ``bugless dev``, by reference with its summary, so that
only ``bugless dev`` itself imports the local stack it runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bugless_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from bugless_core.cli import CommandGroup


@hookimpl
def bugless_register_commands(cli: CommandGroup) -> None:
    """Add ``bugless dev``."""
    cli.add_lazy_command(
        "dev",
        "bugless_dev.command:dev_command",
        "Run the whole tracker locally on an embedded PostgreSQL until Ctrl-C.",
    )
