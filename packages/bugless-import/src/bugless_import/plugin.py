"""Hook implementations of bugless-import (the ``bugless`` entry point names this module).

Registration only: ``bugless import`` and the built-in importers, registered
by reference: an importer's module is imported when ``bugless import`` asks
for it, not in every process that loads plugins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bugless_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from bugless_core.cli import CommandGroup
    from bugless_core.registry import ImporterRegistrar


@hookimpl
def bugless_register_commands(cli: CommandGroup) -> None:
    """Add ``bugless import``."""
    cli.add_lazy_command(
        "import",
        "bugless_import.command:import_command",
        "Import the issues of another tracker with their whole history.",
    )


@hookimpl
def bugless_register_importers(register: ImporterRegistrar) -> None:
    """Register ``github``, ``jira``, ``trac``, ``redmine`` and ``roundup`` by reference."""
    register("github", "bugless_import.sources.github:GitHubImporter")
    register("jira", "bugless_import.sources.jira:JiraImporter")
    register("trac", "bugless_import.sources.trac:TracImporter")
    register("redmine", "bugless_import.sources.redmine:RedmineImporter")
    register("roundup", "bugless_import.sources.roundup:RoundupImporter")
