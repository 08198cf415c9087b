from __future__ import annotations

import importlib.metadata

from bugless_core.plugins import load_plugins


def test_package_installs_with_its_version() -> None:
    import bugless_auth

    assert bugless_auth.__version__ == importlib.metadata.version("bugless-auth")


def test_plugin_module_loads_through_the_bugless_entry_point() -> None:
    plugins = load_plugins()
    assert "bugless_auth.plugin" in {p.module for p in plugins.loaded}
