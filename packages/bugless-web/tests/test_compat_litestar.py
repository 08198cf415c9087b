"""Litestar's private surface, as bugless_web overrides it, is where the compat module says.

The overrides keep Litestar from importing its pydantic, attrs and
OpenTelemetry plugins (~10 MiB of the web tier's memory); an upgrade that
renames or reshapes the overridden methods must fail loudly, not silently
bring the imports back.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from litestar import Litestar

from bugless_web import _compat_litestar as compat


def test_the_installed_litestar_has_both_overridden_methods() -> None:
    compat.verify()


def test_a_renamed_method_fails_naming_it_and_the_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(Litestar, "_get_default_plugins")
    with pytest.raises(compat.LitestarSurfaceChanged) as info:
        compat.verify()
    assert info.value.attribute == "_get_default_plugins"
    assert compat.LITESTAR_VERSION in str(info.value)


def test_a_reshaped_method_fails_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        Litestar, "_patch_opentelemetry_middleware", staticmethod(lambda config, extra: config)
    )
    with pytest.raises(compat.LitestarSurfaceChanged, match="no longer takes"):
        compat.verify()


def test_building_the_app_imports_no_pydantic_attrs_or_opentelemetry_plugin() -> None:
    script = """
import sys
from bugless_core.clients import ServiceAddress
from bugless_web.app import create_app
from bugless_web.settings import WebSettings

address = ServiceAddress("127.0.0.1", 1)
app = create_app(
    WebSettings(model=address, auth=address, session_keys=("k" * 32,), insecure_local=True)
)
assert app.route_handler_method_map
print(" ".join(sorted(sys.modules)))
"""
    loaded = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    assert "bugless_web.app" in loaded
    unwanted = ("litestar.plugins.pydantic", "litestar.plugins.attrs", "opentelemetry", "attrs")
    assert [name for name in unwanted if name in loaded] == []
