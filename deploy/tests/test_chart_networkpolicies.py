"""Who can talk to whom, evaluated from the rendered NetworkPolicies.

A small evaluator of NetworkPolicy semantics (one namespace, pod selectors
and ports; a namespaceSelector counts as "other namespaces") answers the
questions the design asks: only the frontends reach the Model and the
Authenticator, only the Model, the Authenticator and the migration reach the
database, bots reach the API from anywhere.
"""

from __future__ import annotations

from typing import Any

import pytest
from chart_rendering import Manifest, of_kind, pod_templates, render, selects

DB_PORT = 5432


def _labels(component: str, release: str = "bugless") -> dict[str, str]:
    tier = "frontend" if component in {"web", "api"} else "backend"
    return {
        "app.kubernetes.io/name": "bugless",
        "app.kubernetes.io/instance": release,
        "app.kubernetes.io/component": component,
        "bugless.dev/tier": tier,
    }


def _peer_matches(peer: dict[str, Any], labels: dict[str, str] | None) -> bool:
    """Whether a peer admits a pod of this namespace (labels) or the outside (None)."""
    if labels is None:
        return "ipBlock" in peer or "namespaceSelector" in peer
    if "ipBlock" in peer:
        return False
    if "namespaceSelector" in peer and "podSelector" not in peer:
        return not peer["namespaceSelector"]
    if "namespaceSelector" in peer and peer["namespaceSelector"] != {}:
        return False
    return selects(peer.get("podSelector", {}), labels)


def _rule_admits(
    rule: dict[str, Any], peers_key: str, labels: dict[str, str] | None, port: int
) -> bool:
    ports = rule.get("ports")
    if ports and not any(p.get("port") == port for p in ports):
        return False
    peers = rule.get(peers_key)
    return not peers or any(_peer_matches(peer, labels) for peer in peers)


def _allowed(
    policies: list[Manifest],
    source: dict[str, str] | None,
    destination: dict[str, str] | None,
    port: int,
) -> bool:
    """Whether ``source`` may open a TCP connection to ``destination`` on ``port``.

    ``None`` is a party outside the namespace's pods (the internet, a managed
    database). Traffic must pass both the source's egress and the
    destination's ingress policies, each of which applies only when some
    policy selects the pod for that direction.
    """
    if source is not None:
        egress = [
            p
            for p in policies
            if selects(p["spec"]["podSelector"], source) and "Egress" in p["spec"]["policyTypes"]
        ]
        if egress and not any(
            _rule_admits(rule, "to", destination, port)
            for p in egress
            for rule in p["spec"].get("egress", [])
        ):
            return False
    if destination is not None:
        ingress = [
            p
            for p in policies
            if selects(p["spec"]["podSelector"], destination)
            and "Ingress" in p["spec"]["policyTypes"]
        ]
        if ingress and not any(
            _rule_admits(rule, "from", source, port)
            for p in ingress
            for rule in p["spec"].get("ingress", [])
        ):
            return False
    return True


def test_every_workload_is_selected_by_a_network_policy(manifests: list[Manifest]) -> None:
    policies = of_kind(manifests, "NetworkPolicy")
    for workload, pod in pod_templates(manifests):
        labels = pod["metadata"]["labels"]
        selecting = [p for p in policies if selects(p["spec"]["podSelector"], labels)]
        kinds = {t for p in selecting for t in p["spec"]["policyTypes"]}
        assert kinds == {"Ingress", "Egress"}, workload["metadata"]["name"]


def test_only_frontends_reach_model_and_auth_and_the_model_reaches_auth() -> None:
    policies = of_kind(render(), "NetworkPolicy")
    for backend, port in (("model", 50051), ("auth", 50052)):
        assert _allowed(policies, _labels("web"), _labels(backend), port)
        assert _allowed(policies, _labels("api"), _labels(backend), port)
        # A second web release in the namespace (values-web-next.yaml) too.
        assert _allowed(policies, _labels("web", "bugless-web-next"), _labels(backend), port)
        assert not _allowed(policies, {"app": "something-else"}, _labels(backend), port)
        assert not _allowed(policies, None, _labels(backend), port)
        assert not _allowed(policies, _labels("migrate"), _labels(backend), port)
    # The Model fetches the Authenticator's assertion keys; never the reverse.
    assert _allowed(policies, _labels("model"), _labels("auth"), 50052)
    assert not _allowed(policies, _labels("auth"), _labels("model"), 50051)


def test_the_web_and_the_api_reach_the_notifier_and_nobody_else_does() -> None:
    policies = of_kind(render(), "NetworkPolicy")
    for frontend in ("web", "api"):
        assert _allowed(policies, _labels(frontend), _labels("notify"), 50054), frontend
    for other in ("model", "auth", "migrate"):
        assert not _allowed(policies, _labels(other), _labels("notify"), 50054), other
    assert not _allowed(policies, None, _labels("notify"), 50054)
    without = of_kind(render({"notify": {"enabled": False}}), "NetworkPolicy")
    assert not _allowed(without, _labels("api"), _labels("notify"), 50054)


def test_only_model_auth_and_migration_reach_the_database() -> None:
    policies = of_kind(render(), "NetworkPolicy")
    for component in ("model", "auth", "migrate"):
        assert _allowed(policies, _labels(component), None, DB_PORT), component
    for component in ("web", "api"):
        assert not _allowed(policies, _labels(component), None, DB_PORT), component


def test_only_model_auth_and_migration_reach_an_in_cluster_database() -> None:
    manifests = render({"postgresql": {"cnpg": {"enabled": True}}})
    policies = of_kind(manifests, "NetworkPolicy")
    database = {"cnpg.io/cluster": "bugless-db", "cnpg.io/instanceRole": "primary"}
    for component in ("model", "auth", "migrate"):
        assert _allowed(policies, _labels(component), database, DB_PORT), component
    for component in ("web", "api"):
        assert not _allowed(policies, _labels(component), database, DB_PORT), component
    assert not _allowed(policies, {"app": "intruder"}, database, DB_PORT)
    assert _allowed(policies, database, database, DB_PORT), "replication between instances"


def test_the_world_reaches_web_and_api_but_only_their_serving_ports() -> None:
    policies = of_kind(render(), "NetworkPolicy")
    assert _allowed(policies, None, _labels("api"), 50053)
    assert _allowed(policies, None, _labels("web"), 8080)
    assert not _allowed(policies, None, _labels("web"), 50053)
    assert not _allowed(policies, None, _labels("api"), 8080)


@pytest.mark.parametrize("component", ["api", "model", "auth", "web"])
def test_metrics_are_reachable_by_the_scraper(component: str) -> None:
    policies = of_kind(render(), "NetworkPolicy")
    assert _allowed(policies, None, _labels(component), 9090)


def test_ldap_replicas_and_oidc_are_reachable_from_auth_only() -> None:
    values = {
        "auth": {
            "ldap": {"enabled": True, "urls": ["ldaps://a", "ldaps://b"], "baseDn": "dc=x"},
            "oidc": {"enabled": True, "issuer": "https://login", "clientId": "bugless"},
        }
    }
    policies = of_kind(render(values), "NetworkPolicy")
    for port in (636, 443):
        assert _allowed(policies, _labels("auth"), None, port)
        assert not _allowed(policies, _labels("model"), None, port)
        assert not _allowed(policies, _labels("web"), None, port)


def test_the_object_store_is_reachable_from_the_model_only_when_attachments_go_there() -> None:
    assert not _allowed(of_kind(render(), "NetworkPolicy"), _labels("model"), None, 9000)
    values = {
        "model": {
            "blobStore": {
                "type": "s3",
                "s3": {
                    "bucket": "b",
                    "networkPolicyPeers": [{"ipBlock": {"cidr": "10.30.0.0/16"}}],
                    "ports": [9000],
                },
            }
        }
    }
    policies = of_kind(render(values), "NetworkPolicy")
    assert _allowed(policies, _labels("model"), None, 9000)
    for component in ("web", "api", "auth", "notify"):
        assert not _allowed(policies, _labels(component), None, 9000)
