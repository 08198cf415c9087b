"""The chart's alerting rules: valid, unit-tested both ways, documented, rendered as shipped.

``promtool`` (Debian's ``prometheus`` package, 2.42) checks the rules file and
runs its unit tests (``alert_rules_test.yaml``): for every alert, series that
fire it and near misses that do not. That the metrics they read exist is
``test_alert_metrics.py``'s job, against real running services.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from alert_rules import (
    RULE_TESTS,
    RULES,
    RUNBOOK,
    RUNBOOK_URL,
    alerting_rules,
    metrics_of,
    promtool,
    rule_groups,
)
from chart_rendering import of_kind, render, rendered

SEVERITIES = {"warning", "critical"}


def _github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, - for spaces."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _runbook_anchors() -> dict[str, str]:
    """Each ``##``/``###`` heading of the runbook by its anchor."""
    headings = re.findall(r"^#{2,3} (.+)$", RUNBOOK.read_text(), flags=re.MULTILINE)
    return {_github_anchor(heading): heading for heading in headings}


def test_promtool_accepts_the_rules_file() -> None:
    result = promtool("check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerting_rules())} rules found" in result.stdout


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    result = promtool("test", "rules", RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())
    fires: set[str] = set()
    stays_quiet: set[str] = set()
    for group in tests["tests"]:
        for case in group.get("alert_rule_test", []):
            (fires if case.get("exp_alerts") else stays_quiet).add(case["alertname"])
    alerts = {rule["alert"] for rule in alerting_rules()}
    assert alerts - fires == set(), "alerts no unit test sees firing"
    assert alerts - stays_quiet == set(), "alerts no unit test sees staying quiet"
    assert (fires | stays_quiet) - alerts == set(), "unit tests of alerts that no longer exist"


def test_every_alert_reads_a_bugless_metric_and_says_what_to_do() -> None:
    anchors = _runbook_anchors()
    names = [rule["alert"] for rule in alerting_rules()]
    assert len(names) == len(set(names)), "an alert name is used twice"
    for rule in alerting_rules():
        name = rule["alert"]
        assert metrics_of(rule["expr"]), f"{name} reads no bugless_ metric"
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations: dict[str, str] = rule["annotations"]
        assert annotations["summary"].strip(), name
        assert annotations["description"].strip(), name
        url, _, anchor = annotations["runbook_url"].partition("#")
        assert url == RUNBOOK_URL, name
        assert anchors.get(anchor) == name, f"{name}: docs/alerts.md has no section #{anchor}"


def test_the_runbook_has_a_section_for_each_alert_and_no_other() -> None:
    sections = set(re.findall(r"^### (Bugless\w+)$", RUNBOOK.read_text(), flags=re.MULTILINE))
    assert sections == {rule["alert"] for rule in alerting_rules()}


def test_no_prometheus_rule_unless_enabled() -> None:
    assert not of_kind(rendered("values.yaml"), "PrometheusRule")


def test_the_prometheus_rule_carries_the_rules_file_and_its_selector_labels() -> None:
    manifests = render(
        {"metrics": {"prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}}}}
    )
    (rule,) = of_kind(manifests, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["name"] == "bugless-alerts"
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    assert rule["metadata"]["labels"]["app.kubernetes.io/instance"] == "bugless"
    # The Prometheus templates in the annotations reach the operator untouched.
    spec: dict[str, Any] = rule["spec"]
    assert spec == rule_groups()
    assert "{{ $labels.loop }}" in str(spec)


def test_the_production_example_installs_the_rules_where_its_prometheus_looks() -> None:
    production = rendered("values-production.yaml")
    (rule,) = of_kind(production, "PrometheusRule")
    (monitor, *_) = of_kind(production, "ServiceMonitor")
    assert rule["metadata"]["labels"]["release"] == monitor["metadata"]["labels"]["release"]
    assert rule["spec"] == rule_groups()
