"""Hook implementations of bugless-api (the ``bugless`` entry point names this module).

Registration only: ``bugless api serve`` and the client commands
(``bugless issue``, ``hotlist``, ``component``, ``saved-search``; see
:mod:`bugless_api.cli`). The command modules import nothing heavy at module
level, so ``bugless --help`` stays fast.
"""

from __future__ import annotations

import click

from bugless_core.hookspecs import hookimpl


@hookimpl
def bugless_register_commands(cli: click.Group) -> None:
    """Add ``bugless api`` and the client command groups."""
    from bugless_api.cli import register  # noqa: PLC0415

    register(cli)
