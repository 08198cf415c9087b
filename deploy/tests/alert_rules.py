"""The chart's alerting rules as the deploy tests read them, and Debian's ``promtool``.

One rules file (``files/alerts.yaml`` in the chart) is what Prometheus
evaluates, what ``promtool`` checks and unit-tests, and what the chart's
PrometheusRule carries, so every test reads that file through here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from chart_rendering import CHART

RULES = CHART / "files" / "alerts.yaml"
#: ``promtool test rules`` input: series that fire and that do not fire each alert.
RULE_TESTS = Path(__file__).resolve().parent / "alert_rules_test.yaml"
#: What each alert means and what to do, one section per alert.
RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "alerts.md"
#: Where each rule's ``runbook_url`` points: the runbook on the project's home.
RUNBOOK_URL = "https://github.com/bugless/bugless/blob/main/docs/alerts.md"

#: Every bugless metric is named ``bugless_...`` (prometheus_client's own and the
#: gRPC/HTTP middleware's are not alerted on), so a name in an expression is one
#: of these tokens; PromQL functions and label names never start so.
_METRIC_NAME = re.compile(r"\bbugless_[a-z0-9_]*[a-z0-9]\b")


def rule_groups() -> dict[str, Any]:
    """The rules file as Prometheus reads it (``groups:``)."""
    loaded = yaml.safe_load(RULES.read_text())
    assert isinstance(loaded, dict), f"{RULES} is not a mapping"
    return loaded


def alerting_rules() -> list[dict[str, Any]]:
    """Every alerting rule of every group, in file order."""
    return [rule for group in rule_groups()["groups"] for rule in group["rules"] if "alert" in rule]


def metrics_of(expression: str) -> set[str]:
    """The metric names a PromQL expression reads (the sample names, ``_total`` included)."""
    return set(_METRIC_NAME.findall(expression))


def referenced_metrics() -> set[str]:
    """The metric names every alert together reads."""
    return {name for rule in alerting_rules() for name in metrics_of(rule["expr"])}


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run Debian's ``promtool`` (package ``prometheus``) and return what it did.

    Raises:
        AssertionError: promtool is not installed (the message says how).
    """
    found = shutil.which("promtool") or "/usr/bin/promtool"
    assert Path(found).exists(), "the alert tests need promtool: apt-get install prometheus"
    return subprocess.run(
        [found, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )
