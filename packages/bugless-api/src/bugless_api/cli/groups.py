"""The ``bugless`` command groups of bugless-api, which command modules add to.

One module per command group (or part of one): a module imports its group
from here and decorates its commands with ``@issue_group.command(...)``;
:data:`bugless_api.cli.COMMANDS` names each command by reference, so that
running one imports its module only.
"""

from __future__ import annotations

import click

from bugless_core.cli import CommandGroup


@click.group("issue", cls=CommandGroup)
def issue_group() -> None:
    """Find, show, create, change and watch issues through the bugless API."""


@click.group("hotlist", cls=CommandGroup)
def hotlist_group() -> None:
    """List, show, create, change and rank hotlists."""


@click.group("component", cls=CommandGroup)
def component_group() -> None:
    """List, show, create and change components."""


@click.group("saved-search", cls=CommandGroup)
def saved_search_group() -> None:
    """List, run, create, change and delete saved searches."""


@click.group("attachment", cls=CommandGroup)
def attachment_group() -> None:
    """Show, download and delete attachments (attach with `bugless issue attach`)."""


@click.group("notifications", cls=CommandGroup)
def notifications_group() -> None:
    """Show and change what notifies you, and see everything you follow."""


GROUPS: tuple[CommandGroup, ...] = (
    issue_group,
    attachment_group,
    hotlist_group,
    component_group,
    saved_search_group,
    notifications_group,
)
