"""The architecture contracts bite: a deliberate violation in a scratch copy fails `lint-imports`.

``nox -s lint`` runs ``lint-imports`` with the contracts of the root
``pyproject.toml``; a contract that silently passed everything would guard
nothing. These tests copy every package's sources to a scratch directory,
check that the copy passes, then add one forbidden import at a time and check
that ``lint-imports`` fails naming it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every package's ``src`` tree, side by side, plus the root configuration."""
    root = tmp_path_factory.mktemp("architecture")
    for src in sorted((ROOT / "packages").glob("*/src")):
        for package in src.iterdir():
            if package.is_dir() and package.name.startswith("bugless_"):
                shutil.copytree(package, root / "src" / package.name)
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root / "src"), str(ROOT / "scripts")]),
    }
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _violate(root: Path, module: str, line: str) -> Path:
    path = root / "src" / (module.replace(".", "/") + ".py")
    path.write_text(path.read_text() + f"\n{line}  # deliberate violation\n")
    return path


def test_the_unchanged_tree_keeps_every_contract(scratch: Path) -> None:
    result = _lint(scratch)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("bugless_core.errors", "import bugless_web", "Dependencies point one way"),
        ("bugless_core.errors", "import bugless_testing", "Dependencies point one way"),
        ("bugless_api.settings", "import bugless_dev.stack", "Dependencies point one way"),
        ("bugless_web.display", "import bugless_model_postgres", "never by importing a backend"),
        (
            "bugless_model_cockroach.backend",
            "from bugless_model_postgres import _queries",
            "private (_underscore) module",
        ),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    scratch: Path, module: str, line: str, contract: str
) -> None:
    path = _violate(scratch, module, line)
    original = path.read_text().replace(f"\n{line}  # deliberate violation\n", "")
    try:
        result = _lint(scratch)
    finally:
        path.write_text(original)
    assert result.returncode != 0, result.stdout
    broken = " ".join(result.stdout.split("Broken contracts", 1)[-1].split())  # unwrap lines
    assert contract in broken, result.stdout
    assert module in broken, result.stdout
