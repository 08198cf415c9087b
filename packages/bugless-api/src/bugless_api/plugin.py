"""Hook implementations of bugless-api (the ``bugless`` entry point names this module).

Registration only: ``bugless api serve`` and the client commands
(``bugless issue``, ``bugless hotlist``, ``bugless component``). The command
modules import nothing heavy at module level, so ``bugless --help`` stays fast.
"""

from __future__ import annotations

import click

from bugless_core.hookspecs import hookimpl


@hookimpl
def bugless_register_commands(cli: click.Group) -> None:
    """Add ``bugless api`` and the client command groups."""
    from bugless_api.cli.catalog import component_group, hotlist_group  # noqa: PLC0415
    from bugless_api.cli.issues import issue_group  # noqa: PLC0415
    from bugless_api.cli.serve import api_group  # noqa: PLC0415

    for group in (api_group, issue_group, hotlist_group, component_group):
        cli.add_command(group)
