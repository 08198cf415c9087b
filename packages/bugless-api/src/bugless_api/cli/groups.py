"""The ``bugless`` command groups of bugless-api, which command modules add to.

One module per command group (or part of one): a module imports its group
from here and decorates its commands with ``@issue_group.command(...)``;
:data:`bugless_api.cli.COMMAND_MODULES` lists the modules to import, so a
new command is a new module plus one line there.
"""

from __future__ import annotations

import click


@click.group("issue")
def issue_group() -> None:
    """Find, show, create, change and watch issues through the bugless API."""


@click.group("hotlist")
def hotlist_group() -> None:
    """List, show, create, change and rank hotlists."""


@click.group("component")
def component_group() -> None:
    """List, show, create and change components."""


@click.group("saved-search")
def saved_search_group() -> None:
    """List, run, create, change and delete saved searches."""


@click.group("attachment")
def attachment_group() -> None:
    """Show, download and delete attachments (attach with `bugless issue attach`)."""


#: Commands directly under ``bugless`` (``login``, ``whoami``), added by their modules.
TOP_LEVEL: list[click.Command] = []

GROUPS: tuple[click.Group, ...] = (
    issue_group,
    attachment_group,
    hotlist_group,
    component_group,
    saved_search_group,
)
