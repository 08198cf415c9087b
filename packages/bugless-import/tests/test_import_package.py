from __future__ import annotations

import importlib.metadata

import pytest

from bugless_core.importer import Importer, SourceChange
from bugless_core.plugins import load_plugins
from bugless_core.registry import DuplicateRegistrationError, Registry


def test_package_installs_with_its_version() -> None:
    import bugless_import

    assert bugless_import.__version__ == importlib.metadata.version("bugless-import")


def test_importers_register_by_name_through_the_entry_point() -> None:
    from bugless_import.sources.github import GitHubImporter
    from bugless_import.sources.trac import TracImporter

    plugins = load_plugins()
    assert "bugless_import.plugin" in {p.module for p in plugins.loaded}
    assert plugins.importers.get("github") is GitHubImporter
    assert plugins.importers.get("trac") is TracImporter
    assert {"github", "jira", "redmine", "roundup", "trac"} <= set(plugins.importers.names())


def test_a_second_importer_under_a_taken_name_is_refused() -> None:
    from bugless_import.sources.github import GitHubImporter

    class Impostor(GitHubImporter):
        pass

    registry: Registry[type[Importer]] = Registry("importer")
    registry.register(GitHubImporter)
    with pytest.raises(DuplicateRegistrationError, match="importer 'github'"):
        registry.register(Impostor)


def test_a_change_of_an_unknown_field_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown change field 'mood'"):
        SourceChange("mood", old="sad", new="glad")
