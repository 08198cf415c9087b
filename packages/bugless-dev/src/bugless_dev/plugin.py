"""Hook implementations of bugless-dev (the ``bugless`` entry point names this module).

Registration only: ``bugless dev``. The command module imports nothing heavy
at module level, so ``bugless --help`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bugless_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from bugless_core.cli import CommandGroup


@hookimpl
def bugless_register_commands(cli: CommandGroup) -> None:
    """Add ``bugless dev``."""
    cli.add_lazy_command("dev", "bugless_dev.command:dev_command")
