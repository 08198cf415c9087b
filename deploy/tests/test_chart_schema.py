"""The rendered chart is valid Kubernetes: helm lint, and kubernetes-validate --strict."""

from __future__ import annotations

import functools
from typing import Any

import helm_python
import kubernetes_validate  # type: ignore[import-untyped]  # ships no type hints
import kubernetes_validate.utils  # type: ignore[import-untyped]  # ships no type hints
import pytest
from chart_rendering import CHART, Manifest, load_values

#: The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest known.
KUBERNETES_VERSIONS = ["1.29.0", kubernetes_validate.utils.latest_version()]

#: Objects of operators' CRDs, which kubernetes-validate has no schema for.
CUSTOM_RESOURCES = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("cert-manager.io/v1", "Certificate"),
    ("cert-manager.io/v1", "Issuer"),
    ("postgresql.cnpg.io/v1", "Cluster"),
    ("postgresql.cnpg.io/v1", "ScheduledBackup"),
}


@pytest.fixture(scope="session", autouse=True)
def _cache_schemas() -> None:
    # kubernetes-validate re-reads its 1 MB definitions file for every object;
    # the files never change, so read each once.
    original = kubernetes_validate.utils.schema_contents
    kubernetes_validate.utils.schema_contents = functools.cache(original)


def test_helm_lint_strict_reports_nothing(values_file: str) -> None:
    report: dict[str, Any] = helm_python.lint(
        CHART, load_values(values_file), strict=True, kube_version="v1.29.0"
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems, problems
    assert not report["errors"], report["errors"]


@pytest.mark.parametrize("kubernetes_version", KUBERNETES_VERSIONS)
def test_every_object_validates_strictly(
    manifests: list[Manifest], kubernetes_version: str
) -> None:
    for manifest in manifests:
        key = (manifest["apiVersion"], manifest["kind"])
        name = f"{manifest['kind']}/{manifest['metadata']['name']}"
        if key in CUSTOM_RESOURCES:
            assert manifest["metadata"]["name"]
            assert isinstance(manifest.get("spec"), dict), name
            continue
        try:
            kubernetes_validate.validate(manifest, kubernetes_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(part) for part in exc.path)
            pytest.fail(
                f"{name} is invalid on Kubernetes {kubernetes_version}: {path}: {exc.message}"
            )


def test_objects_are_unique_and_namespaced_by_release(manifests: list[Manifest]) -> None:
    seen = set()
    for manifest in manifests:
        key = (manifest["kind"], manifest["metadata"]["name"])
        assert key not in seen, f"{key} is rendered twice"
        seen.add(key)
        assert manifest["metadata"]["name"].startswith("bugless"), key
        assert len(manifest["metadata"]["name"]) <= 63, key
