"""Render the Helm chart offline, once per values file, for the deploy tests.

The chart is rendered with helm-python-sdk (Helm's Go SDK through ctypes, no
``helm`` binary and no cluster), the way ``helm template`` would, and parsed
into plain dicts. Every ``values*.yaml`` next to the chart is a scenario, so a
new worked example is tested by adding the file.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import yaml

CHART = Path(__file__).resolve().parents[1] / "helm" / "bugless"
DOCKERFILE = Path(__file__).resolve().parents[1] / "docker" / "Dockerfile"
RELEASE = "bugless"
NAMESPACE = "bugless"

#: Every shipped values file; values.yaml alone means "the defaults".
VALUES_FILES = sorted(path.name for path in CHART.glob("values*.yaml"))

Manifest = dict[str, Any]


def load_values(values_file: str) -> dict[str, Any]:
    """The overrides a values file applies on top of the chart's defaults."""
    if values_file == "values.yaml":
        return {}
    loaded = yaml.safe_load((CHART / values_file).read_text())
    assert isinstance(loaded, dict), f"{values_file} is not a mapping"
    return loaded


def render(values: dict[str, Any] | None = None, *, release: str = RELEASE) -> list[Manifest]:
    """Render the chart with ``values`` and return every object it makes.

    Raises:
        helm_python.HelmError: a template failed (``fail``/``required``).
    """
    with helm_python.Chart.load(CHART) as chart:
        files = chart.render(values or {}, name=release, namespace=NAMESPACE, is_install=True)
    manifests: list[Manifest] = []
    for path, text in sorted(files.items()):
        if not path.endswith((".yaml", ".yml")):
            continue  # NOTES.txt
        manifests.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return manifests


def render_notes(values: dict[str, Any] | None = None) -> str:
    """The text ``helm install`` prints after installing with ``values`` (NOTES.txt)."""
    with helm_python.Chart.load(CHART) as chart:
        files = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    (notes,) = [text for path, text in files.items() if path.endswith("NOTES.txt")]
    return notes


@functools.cache
def _rendered(values_file: str) -> tuple[Manifest, ...]:
    return tuple(render(load_values(values_file)))


def rendered(values_file: str) -> list[Manifest]:
    """The chart rendered with one shipped values file (cached for the session)."""
    return list(_rendered(values_file))


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    """The objects of one kind."""
    return [m for m in manifests if m["kind"] == kind]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A container's env entries by name."""
    return {entry["name"]: entry for entry in container.get("env", [])}


def pod_templates(manifests: list[Manifest]) -> Iterator[tuple[Manifest, dict[str, Any]]]:
    """Every workload (Deployment, Job) with its pod template."""
    for manifest in manifests:
        if manifest["kind"] in {"Deployment", "Job", "StatefulSet", "DaemonSet"}:
            yield manifest, manifest["spec"]["template"]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a LabelSelector (matchLabels and matchExpressions) selects ``labels``."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        present = expression["key"] in labels
        operator = expression["operator"]
        if operator == "In" and labels.get(expression["key"]) not in expression["values"]:
            return False
        if operator == "NotIn" and labels.get(expression["key"]) in expression["values"]:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True
