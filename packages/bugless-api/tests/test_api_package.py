from __future__ import annotations

import importlib.metadata

from bugless_core.plugins import load_plugins
from bugless_testing.import_boundary import BACKEND_ONLY_MODULES, modules_of_service


def test_package_installs_with_its_version() -> None:
    import bugless_api

    assert bugless_api.__version__ == importlib.metadata.version("bugless-api")


def test_plugin_module_loads_through_the_bugless_entry_point() -> None:
    plugins = load_plugins()
    assert "bugless_api.plugin" in {p.module for p in plugins.loaded}


def test_bugless_api_serve_imports_no_backend_code() -> None:
    """The API talks to the Model and the Authenticator over gRPC: their
    database driver, backends and password hashing would only cost it memory."""
    loaded = modules_of_service(["api", "serve"], ["bugless_api.server"])
    assert "bugless_api.server" in loaded
    assert [name for name in BACKEND_ONLY_MODULES if name in loaded] == []
