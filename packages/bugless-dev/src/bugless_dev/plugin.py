"""Hook implementations of bugless-dev (the ``bugless`` entry point names this module).

Registration only: ``bugless dev``. The command module imports nothing heavy
at module level, so ``bugless --help`` stays fast.
"""

from __future__ import annotations

import click

from bugless_core.hookspecs import hookimpl


@hookimpl
def bugless_register_commands(cli: click.Group) -> None:
    """Add ``bugless dev``."""
    from bugless_dev.command import dev_command  # noqa: PLC0415

    cli.add_command(dev_command)
