"""Fixtures bugless-core's tests share, and the plugins they use.

The real PostgreSQL (``postgres_server``) and local stack (``bugless_stack``)
fixtures are enabled here, for every module of the tree, as every package's
tests conftest does, rather than by the modules that use them: pytest honours
``pytest_plugins`` in a conftest it loads before collecting (a test folder
named on the command line, and its parents) and refuses it in any other; in
a test module it applies to the whole run from whenever collection reaches
that module, which pytest's documentation advises against.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest_plugins = ["bugless_testing.postgres", "bugless_testing.stack"]

PluginFactory = Callable[..., Path]


@pytest.fixture
def installed_plugin(tmp_path: Path) -> Iterator[PluginFactory]:
    """Install a real distribution with a `bugless` entry point on sys.path.

    It is a genuine *.dist-info next to its module, so importlib.metadata and
    `bugless plugins` in a subprocess discover it exactly as they would a
    pip-installed plugin.
    """
    added: list[str] = []

    def install(
        dist: str, module: str, source: str, entry_name: str | None = None, suffix: str = ""
    ) -> Path:
        site = tmp_path / f"site-{dist}{suffix}"
        site.mkdir()
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[bugless]\n{entry_name or dist} = {module}\n")
        (info / "top_level.txt").write_text(module + "\n")
        sys.path.insert(0, str(site))
        added.append(str(site))
        return site

    yield install
    for path in added:
        sys.path.remove(path)
    for name in [m for m in sys.modules if m.startswith("bugless_fixture_")]:
        del sys.modules[name]
