"""House rules for every workload the chart renders, with every shipped values file.

These are the properties that keep bugless available through node drains,
rollouts and zone failures, and that keep a compromised pod contained.
"""

from __future__ import annotations

import math
from typing import Any

from chart_rendering import Manifest, env_of, of_kind, pod_templates, selects

#: Annotation prefixes that tie an Ingress to one controller.
CONTROLLER_ANNOTATIONS = (
    "nginx.ingress.kubernetes.io/",
    "nginx.org/",
    "traefik.",
    "alb.ingress.kubernetes.io/",
    "kubernetes.io/ingress.class",
    "haproxy.",
    "ingress.kubernetes.io/",
    "konghq.com/",
    "cloud.google.com/",
    "networking.gke.io/",
    "appgw.ingress.kubernetes.io/",
    "projectcontour.io/",
)
GRPC_COMPONENTS = {"api", "model", "auth"}


def _component(manifest: Manifest) -> str:
    component: str = manifest["metadata"]["labels"]["app.kubernetes.io/component"]
    return component


def _container(deployment: Manifest) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "one container per pod: probes and drain are per process"
    container: dict[str, Any] = containers[0]
    return container


def test_every_deployment_has_a_pod_disruption_budget(manifests: list[Manifest]) -> None:
    budgets = of_kind(manifests, "PodDisruptionBudget")
    for deployment in of_kind(manifests, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        matching = [b for b in budgets if selects(b["spec"]["selector"], labels)]
        assert len(matching) == 1, deployment["metadata"]["name"]
        spec = matching[0]["spec"]
        assert spec.get("maxUnavailable", 0) == 1 or spec.get("minAvailable", 0) >= 1


def test_every_deployment_runs_at_least_two_replicas(manifests: list[Manifest]) -> None:
    autoscalers = {
        hpa["spec"]["scaleTargetRef"]["name"]: hpa
        for hpa in of_kind(manifests, "HorizontalPodAutoscaler")
    }
    for deployment in of_kind(manifests, "Deployment"):
        name = deployment["metadata"]["name"]
        if name in autoscalers:
            assert "replicas" not in deployment["spec"], f"{name}: the HPA owns replicas"
            assert autoscalers[name]["spec"]["minReplicas"] >= 2, name
        else:
            assert deployment["spec"]["replicas"] >= 2, name


def test_rolling_updates_never_go_below_capacity(manifests: list[Manifest]) -> None:
    for deployment in of_kind(manifests, "Deployment"):
        strategy = deployment["spec"]["strategy"]
        assert strategy["type"] == "RollingUpdate"
        assert strategy["rollingUpdate"]["maxUnavailable"] == 0
        assert strategy["rollingUpdate"]["maxSurge"] not in (0, "0%")


def test_pods_spread_across_zones_and_nodes(manifests: list[Manifest]) -> None:
    for deployment in of_kind(manifests, "Deployment"):
        pod = deployment["spec"]["template"]
        constraints = pod["spec"]["topologySpreadConstraints"]
        keys = {c["topologyKey"] for c in constraints}
        assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
        for constraint in constraints:
            assert selects(constraint["labelSelector"], pod["metadata"]["labels"])
            assert "pod-template-hash" in constraint.get("matchLabelKeys", [])


def test_every_container_has_resource_requests_and_limits(manifests: list[Manifest]) -> None:
    for workload, pod in pod_templates(manifests):
        for container in pod["spec"]["containers"]:
            resources = container["resources"]
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[kind]), workload["metadata"]["name"]


def test_every_pod_is_non_root_read_only_and_unprivileged(manifests: list[Manifest]) -> None:
    for workload, pod in pod_templates(manifests):
        name = workload["metadata"]["name"]
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] > 0, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["enableServiceLinks"] is False, f"{name}: service links clash with BUGLESS_*"
        tmp_volumes = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert "add" not in context["capabilities"], name
            assert context["seccompProfile"]["type"] == "RuntimeDefault", name
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts.get("/tmp") in tmp_volumes, f"{name}: /tmp must be a writable emptyDir"


def test_grpc_services_answer_native_grpc_readiness_unless_they_speak_tls(
    manifests: list[Manifest],
) -> None:
    for deployment in of_kind(manifests, "Deployment"):
        component = _component(deployment)
        container = _container(deployment)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert probe in container, f"{component} has no {probe}"
        if component not in GRPC_COMPONENTS:
            continue
        env = env_of(container)
        port = int(env[f"BUGLESS_{component.upper()}_PORT"]["value"])
        readiness = container["readinessProbe"]
        if f"BUGLESS_{component.upper()}_TLS_CERT" not in env:
            assert readiness["grpc"]["port"] == port, component
        elif "exec" in readiness:
            command = readiness["exec"]["command"]
            assert command[1] == "/opt/bugless-probe/bugless_grpc_health.py"
            assert f"--port={port}" in command
        else:
            # TLS without a probe identity (the API by default): a TCP check.
            assert component == "api"
            assert readiness["tcpSocket"]["port"] == "grpc"


def test_web_probes_use_readyz_and_healthz(manifests: list[Manifest]) -> None:
    for deployment in of_kind(manifests, "Deployment"):
        if _component(deployment) != "web":
            continue
        container = _container(deployment)
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_termination_grace_outlasts_prestop_drain_and_grace(manifests: list[Manifest]) -> None:
    """The pod is never killed before its drain could end, the web's transfer bound included."""
    for deployment in of_kind(manifests, "Deployment"):
        component = _component(deployment)
        container = _container(deployment)
        env = env_of(container)
        drain = float(env[f"BUGLESS_{component.upper()}_DRAIN_SECONDS"]["value"])
        grace = float(env[f"BUGLESS_{component.upper()}_GRACE_SECONDS"]["value"])
        transfers = env.get(f"BUGLESS_{component.upper()}_DRAIN_TRANSFER_SECONDS")
        if transfers is not None:
            assert float(transfers["value"]) >= grace, component
            grace = max(grace, float(transfers["value"]))
        sleep_command = container["lifecycle"]["preStop"]["exec"]["command"]
        assert sleep_command[0] == "sleep"
        pre_stop = float(sleep_command[1])
        period = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert period > math.ceil(pre_stop + drain + grace), component
        assert drain > 0, f"{component}: no drain means dropped requests on every rollout"


def test_grpc_servers_listen_on_all_interfaces_with_metrics(manifests: list[Manifest]) -> None:
    for deployment in of_kind(manifests, "Deployment"):
        component = _component(deployment)
        container = _container(deployment)
        env = env_of(container)
        prefix = f"BUGLESS_{component.upper()}_"
        assert env[f"{prefix}HOST"]["value"] == "0.0.0.0"
        assert env[f"{prefix}METRICS_HOST"]["value"] == "0.0.0.0"
        metrics_port = int(env[f"{prefix}METRICS_PORT"]["value"])
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["metrics"] == metrics_port
        annotations = deployment["spec"]["template"]["metadata"].get("annotations") or {}
        metrics_services = [
            s
            for s in of_kind(manifests, "Service")
            if s["metadata"]["name"] == f"{deployment['metadata']['name']}-metrics"
        ]
        assert len(metrics_services) == 1, component
        monitored = any(
            selects(m["spec"]["selector"], metrics_services[0]["metadata"]["labels"])
            for m in of_kind(manifests, "ServiceMonitor")
        )
        assert annotations.get("prometheus.io/port") == str(metrics_port) or monitored, component


def test_metrics_are_never_on_a_public_service(manifests: list[Manifest]) -> None:
    for service in of_kind(manifests, "Service"):
        if service["spec"].get("type") == "LoadBalancer":
            assert {p["name"] for p in service["spec"]["ports"]} == {"grpc"}


def test_secrets_come_from_secret_refs_never_values(manifests: list[Manifest]) -> None:
    sensitive = ("SECRET", "PASSWORD", "DATABASE_URL", "SESSION_KEYS")
    for workload, pod in pod_templates(manifests):
        for container in pod["spec"]["containers"]:
            for name, entry in env_of(container).items():
                if any(word in name for word in sensitive) and not name.endswith("_FILES"):
                    assert "secretKeyRef" in entry.get("valueFrom", {}), (
                        f"{workload['metadata']['name']}: {name} must come from a Secret"
                    )
    assert not of_kind(manifests, "Secret"), "the chart reads Secrets; it never makes them"


def test_ingress_is_plain_networking_v1_without_controller_annotations(
    manifests: list[Manifest],
) -> None:
    for ingress in of_kind(manifests, "Ingress"):
        assert ingress["apiVersion"] == "networking.k8s.io/v1"
        for key in ingress["metadata"].get("annotations") or {}:
            assert not key.startswith(CONTROLLER_ANNOTATIONS), key
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert path["backend"]["service"]["port"] == {"name": "http"}


def test_the_api_is_a_mutual_tls_load_balancer_not_an_ingress_backend(
    manifests: list[Manifest],
) -> None:
    api = [d for d in of_kind(manifests, "Deployment") if _component(d) == "api"]
    if not api:
        return
    env = env_of(_container(api[0]))
    for variable in ("BUGLESS_API_TLS_CERT", "BUGLESS_API_TLS_KEY", "BUGLESS_API_CLIENT_CA"):
        assert env[variable]["value"].startswith("/etc/bugless/"), variable
    services = [s for s in of_kind(manifests, "Service") if s["metadata"]["name"] == "bugless-api"]
    assert services[0]["spec"]["type"] == "LoadBalancer"
    for ingress in of_kind(manifests, "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert path["backend"]["service"]["name"] != "bugless-api"
