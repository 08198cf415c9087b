from __future__ import annotations

import importlib.metadata

from bugless_core.plugins import load_plugins
from bugless_model_cockroach import CockroachBackend
from bugless_model_postgres import PostgresBackend


def test_package_installs_with_its_version() -> None:
    import bugless_model_cockroach

    assert bugless_model_cockroach.__version__ == importlib.metadata.version(
        "bugless-model-cockroach"
    )


def test_plugin_module_loads_through_the_bugless_entry_point() -> None:
    plugins = load_plugins()
    assert "bugless_model_cockroach.plugin" in {p.module for p in plugins.loaded}


def test_the_backend_is_registered_as_cockroach_beside_postgres() -> None:
    backends = load_plugins().model_backends
    assert backends.get("cockroach") is CockroachBackend
    assert backends.get("postgres") is PostgresBackend
    assert issubclass(CockroachBackend, PostgresBackend)
