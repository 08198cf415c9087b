"""Hook implementations of bugless-api (the ``bugless`` entry point names this module).

Registration only: ``bugless api serve`` and the client commands
(``bugless issue``, ``hotlist``, ``component``, ``saved-search``; see
:mod:`bugless_api.cli`), each by reference: a command's module is imported
when it runs, so ``bugless issue show`` imports neither the API server's
settings nor the other commands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bugless_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from bugless_core.cli import CommandGroup


@hookimpl
def bugless_register_commands(cli: CommandGroup) -> None:
    """Add ``bugless api`` and the client command groups."""
    from bugless_api.cli import register  # noqa: PLC0415

    register(cli)
