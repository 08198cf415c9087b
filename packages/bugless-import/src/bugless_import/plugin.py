"""Hook implementations of bugless-import (the ``bugless`` entry point names this module).

Registration only: ``bugless import`` and the built-in importers. Importer
modules are imported when registered but read nothing until a run builds one.
"""

from __future__ import annotations

import click

from bugless_core.hookspecs import hookimpl
from bugless_core.registry import ImporterRegistrar


@hookimpl
def bugless_register_commands(cli: click.Group) -> None:
    """Add ``bugless import``."""
    from bugless_import.command import import_command  # noqa: PLC0415

    cli.add_command(import_command)


@hookimpl
def bugless_register_importers(register: ImporterRegistrar) -> None:
    """Register ``github``, ``jira``, ``trac``, ``redmine`` and ``roundup``."""
    from bugless_import.sources import github, jira, redmine, roundup, trac  # noqa: PLC0415

    register(github.GitHubImporter)
    register(jira.JiraImporter)
    register(trac.TracImporter)
    register(redmine.RedmineImporter)
    register(roundup.RoundupImporter)
