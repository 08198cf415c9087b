"""The ``bugless`` commands of bugless-api: ``api serve`` and the client commands.

Client commands live one module per command group (``issues``,
``issue_changes``, ``hotlists``, ``components``, ``saved_searches``), each
adding its commands to a group of :mod:`bugless_api.cli.groups`. To add
commands, write a module that does the same and list it in
:data:`COMMAND_MODULES`.
"""

from __future__ import annotations

import importlib

import click

#: Modules (under ``bugless_api.cli``) whose import adds their commands to the groups.
COMMAND_MODULES: tuple[str, ...] = (
    "issues",
    "issue_changes",
    "hotlists",
    "components",
    "webhooks",
    "saved_searches",
    "comment_edits",
    "custom_fields",
    "attachments",
    "login",
)


def register(cli: click.Group) -> None:
    """Add ``bugless api`` and every client command group to ``cli``."""
    from bugless_api.cli.groups import GROUPS, TOP_LEVEL  # noqa: PLC0415
    from bugless_api.cli.serve import api_group  # noqa: PLC0415

    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}")
    cli.add_command(api_group)
    for group in GROUPS:
        cli.add_command(group)
    for top in TOP_LEVEL:
        cli.add_command(top)
