from __future__ import annotations

import importlib.metadata
import subprocess
import sys

from bugless_core.plugins import load_plugins
from bugless_testing.import_boundary import BACKEND_ONLY_MODULES, modules_of_service


def test_package_installs_with_its_version() -> None:
    import bugless_web

    assert bugless_web.__version__ == importlib.metadata.version("bugless-web")


def test_plugin_module_loads_through_the_bugless_entry_point() -> None:
    plugins = load_plugins()
    assert "bugless_web.plugin" in {p.module for p in plugins.loaded}


def test_loading_every_plugin_leaves_the_web_stack_and_httpx_unimported() -> None:
    """Each bugless process loads every installed plugin: the Model and the API
    must not pay (in memory, at start) for the web tier's Litestar and Jinja2,
    the notifier's httpx, or the development tools."""
    script = (
        "import sys; from bugless_core.plugins import load_plugins; load_plugins(); "
        "print(' '.join(sorted(sys.modules)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    heavy = ("litestar", "jinja2", "markdown_it", "uvicorn", "httpx", "rich", "bugless_dev.stack")
    for name in heavy:
        assert name not in loaded, f"loading plugins imported {name}"
    from bugless_web import WebSettings, create_app  # still importable, on first use

    assert callable(create_app)
    assert WebSettings.__name__ == "WebSettings"


def test_bugless_web_serve_imports_no_backend_and_no_grpc_server() -> None:
    """The web tier is a gRPC client: the Model's driver and backend, the
    Authenticator's store and hashing, and the gRPC server side (reflection's
    descriptor tables) would only cost it memory (bench/JOURNAL.md)."""
    loaded = modules_of_service(["web", "serve"], ["bugless_web.server", "bugless_web.app"])
    assert "bugless_web.app" in loaded
    not_for_the_web = (
        *BACKEND_ONLY_MODULES,
        "bugless_core.grpc._server",
        "google.protobuf.descriptor_pb2",
    )
    assert [name for name in not_for_the_web if name in loaded] == []
