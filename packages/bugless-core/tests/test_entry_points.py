"""Plugins are found as ``importlib.metadata`` finds them, without importing it.

:mod:`bugless_core._entry_points` searches ``sys.path`` itself, so these
tests hold it to ``importlib.metadata.entry_points`` over the real
environment, plugins installed by uv from a real wheel while the CLI is used,
a removed one, and a zip on ``sys.path`` (which it leaves to
``importlib.metadata``).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from bugless_core import _entry_points
from bugless_core._entry_points import group_entry_points
from bugless_core.plugins import load_plugins

PluginFactory = Callable[..., Path]

PLUGIN = """
from bugless_core import hookimpl


@hookimpl
def bugless_register_importers(register):
    register("late", "bugless_fixture_late:Nothing")
"""


def _key(name: str, value: str, distribution: str) -> tuple[str, str, str]:
    return name, value, re.sub(r"[-_.]+", "_", distribution).lower()


def _as_importlib_metadata_finds(group: str) -> list[tuple[str, str, str]]:
    return sorted(
        _key(ep.name, ep.value, ep.dist.name if ep.dist else "")
        for ep in importlib.metadata.entry_points(group=group)
    )


def _as_searched(group: str) -> list[tuple[str, str, str]]:
    return sorted(_key(ep.name, ep.value, ep.distribution) for ep in group_entry_points(group))


@pytest.mark.parametrize("group", ["bugless", "console_scripts", "pytest11"])
def test_the_search_finds_what_importlib_metadata_finds(
    group: str, installed_plugin: PluginFactory
) -> None:
    installed_plugin("bugless-fixture-seen", "bugless_fixture_seen", "", "seen")
    searched = _as_searched(group)
    assert searched == _as_importlib_metadata_finds(group)
    assert searched  # each group has entry points in a test environment
    if group == "bugless":
        assert ("seen", "bugless_fixture_seen", "bugless_fixture_seen") in searched
        assert ("model-postgres", "bugless_model_postgres.plugin", "bugless_model_postgres") in (
            searched
        )


def test_the_first_of_a_distribution_on_sys_path_wins(
    installed_plugin: PluginFactory,
) -> None:
    """A distribution seen twice (an older copy further down sys.path) counts once."""
    installed_plugin("bugless-fixture-twice", "bugless_fixture_old", "", "twice")
    installed_plugin("bugless-fixture-twice", "bugless_fixture_new", "", "twice", suffix="-again")
    assert [ep.value for ep in group_entry_points("bugless") if ep.name == "twice"] == [
        "bugless_fixture_new"
    ]
    assert _as_searched("bugless") == _as_importlib_metadata_finds("bugless")


def test_a_zip_on_sys_path_is_searched_by_importlib_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "app.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("bugless_fixture_zipped.py", "")
        info = "bugless_fixture_zipped-1.0.dist-info"
        zipped.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: z\nVersion: 1.0\n")
        zipped.writestr(f"{info}/entry_points.txt", "[bugless]\nzipped = bugless_fixture_zipped\n")
    monkeypatch.syspath_prepend(str(archive))
    assert _entry_points._search_path_directories("bugless") is None
    found = {ep.name: ep for ep in group_entry_points("bugless")}
    assert found["zipped"].value == "bugless_fixture_zipped"
    assert _as_searched("bugless") == _as_importlib_metadata_finds("bugless")


def test_an_entry_point_loads_its_module_attribute() -> None:
    entry = _entry_points.EntryPoint("x", "bugless_core.plugins : load_plugins [extra]", "d")
    assert entry.load() is load_plugins


def _wheel(directory: Path) -> Path:
    """A real wheel of ``bugless-fixture-late`` 1.0, a plugin adding the importer ``late``."""
    info = "bugless_fixture_late-1.0.dist-info"
    files = {
        "bugless_fixture_late.py": PLUGIN,
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: bugless-fixture-late\nVersion: 1.0\n",
        f"{info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: bugless-tests\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n"
        ),
        f"{info}/entry_points.txt": "[bugless]\nlate = bugless_fixture_late\n",
    }
    record = []
    for name, text in files.items():
        digest = hashlib.sha256(text.encode()).digest()
        encoded = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        record.append(f"{name},sha256={encoded},{len(text.encode())}")
    record.append(f"{info}/RECORD,,")
    path = directory / "bugless_fixture_late-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)
        wheel.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return path


def _uv(*args: str) -> None:
    uv = shutil.which("uv")
    assert uv is not None, "this test installs a wheel with uv (nox's venv backend)"
    subprocess.run(
        [uv, "pip", *args, "--python", sys.executable, "--offline", "--quiet"],
        check=True,
        capture_output=True,
        timeout=120,
    )


def _plugins_listed(target: Path) -> dict[str, str]:
    """``bugless plugins --json`` with ``target`` on sys.path: plugin name -> distribution."""
    pythonpath = os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": pythonpath}
    result = subprocess.run(
        [sys.executable, "-c", "from bugless_core.cli import main; main()", "plugins", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=180,
    )
    return {p["name"]: p["distribution"] for p in json.loads(result.stdout)["plugins"]}


def test_a_plugin_installed_after_a_first_run_is_found_and_gone_once_uninstalled(
    tmp_path: Path,
) -> None:
    """Every run searches anew: what uv installs or removes between two runs shows at once."""
    target = tmp_path / "target"
    target.mkdir()
    listed = _plugins_listed(target)
    assert "late" not in listed
    # The built-in plugin names its package in a checkout's editable install too
    # (whose metadata may record no top-level names: it said "-").
    assert listed["bugless-core"] == "bugless-core"
    _uv("install", "--target", str(target), "--no-index", str(_wheel(tmp_path)))
    assert _plugins_listed(target)["late"] == "bugless-fixture-late"
    _uv("uninstall", "--target", str(target), "bugless-fixture-late")
    assert "late" not in _plugins_listed(target)


def test_loading_the_plugins_does_not_import_importlib_metadata() -> None:
    """Importing it (email, zipfile, csv, pathlib) cost more than all of ``bugless --help``."""
    probe = (
        "import sys\n"
        "from bugless_core.cli import build_cli\n"
        "from bugless_core.plugins import load_plugins\n"
        "plugins = load_plugins()\n"
        "build_cli(plugins)\n"
        "assert len(plugins.loaded) > 1, plugins.loaded\n"
        "print(sorted(m for m in ('importlib.metadata', 'email') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=180
    )
    assert result.stdout.strip() == "[]"
