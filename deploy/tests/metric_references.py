"""The metric names and labels the docs and the alerting rules name, as the deploy tests read them.

An operator writes a dashboard or a query from what the docs say
(``bugless_background_failures_total{loop}``), and Prometheus evaluates the
rules' expressions and fills their annotations (``{{ $labels.loop }}``).
A name or a label no service exports answers nothing, silently. The scrape
of the real services in ``test_alert_metrics.py`` is compared with what is
read here.

What counts as naming a metric on a page: inside backticks, a name starting
``bugless_``, ``grpc_`` or ``http_server_`` that is followed by ``{labels}``,
or that ends the way Prometheus names end (:data:`METRIC_SUFFIXES`). Other
``bugless_…`` names on the pages are not metrics (a hook, a cookie, a
table, a module) and are left alone; a metric named with neither braces nor
such an ending is not checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from alert_rules import alerting_rules, metrics_of

ROOT = Path(__file__).resolve().parents[2]
#: Labels Prometheus adds from its scrape target (the ServiceMonitor's), not
#: the service: a rule may use them and no ``/metrics`` shows them.
TARGET_LABELS = frozenset({"namespace", "job", "instance", "pod", "service", "container"})
#: Endings of a Prometheus name (units, counters, and the gauges bugless names so).
METRIC_SUFFIXES = (
    "_total",
    "_seconds",
    "_bytes",
    "_count",
    "_sum",
    "_bucket",
    "_info",
    "_failures",
    "_skew",
    "_behind",
    "_in_flight",
    "_connections",
)
_BACKTICKED = re.compile(r"`([^`\n]+)`")
_NAMED = re.compile(r"\b((?:bugless|grpc|http_server)_[a-z0-9_]*[a-z0-9])\b(\{[^}]*\})?")
#: A label, or a matcher on one (``outcome="dead"``; a page may list values: ``"a"|"b"``).
_LABEL = re.compile(r"^\s*([a-zA-Z_]\w*)\s*(?:(?:=~|!~|!=|=)\s*\".*)?$")
_BY = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_MATCHERS = re.compile(r"\b(bugless_[a-z0-9_]*[a-z0-9])\{([^}]*)\}")
_TEMPLATE_LABEL = re.compile(r"\$labels\.(\w+)")


@dataclass(frozen=True)
class Reference:
    """A metric a page or a rule names, with the labels it names on it."""

    where: str
    metric: str
    labels: frozenset[str]


def pages() -> list[Path]:
    """Every page an operator reads: docs/, the top README, deploy/'s and each package's."""
    return [
        *sorted((ROOT / "docs").glob("*.md")),
        ROOT / "README.md",
        ROOT / "deploy" / "README.md",
        *sorted((ROOT / "packages").glob("*/README.md")),
    ]


def label_names(braces: str) -> frozenset[str]:
    """The label names of ``{a, b="x"}`` (a page's list or a PromQL matcher list).

    Raises:
        ValueError: a part is neither a name nor a ``name="value"`` matcher.
    """
    names: set[str] = set()
    for part in braces.strip("{}").split(","):
        if not part.strip():
            continue
        found = _LABEL.match(part)
        if found is None:
            raise ValueError(f"not a label or a matcher: {part!r} in {braces!r}")
        names.add(found[1])
    return frozenset(names)


def page_references(text: str, where: str) -> list[Reference]:
    """The metrics a page's backticked spans name (see the module for what counts)."""
    found: list[Reference] = []
    for span in _BACKTICKED.findall(text):
        for name, braces in _NAMED.findall(span):
            if braces or (span.strip() == name and name.endswith(METRIC_SUFFIXES)):
                found.append(Reference(where, name, label_names(braces) if braces else frozenset()))
    return found


def documented_references() -> list[Reference]:
    """Every metric every page names."""
    return [
        reference
        for page in pages()
        for reference in page_references(
            page.read_text(encoding="utf-8"), str(page.relative_to(ROOT))
        )
    ]


def rule_labels(rule: dict[str, object]) -> frozenset[str]:
    """The labels a rule's expression groups or matches by and its annotations print.

    Prometheus' own target labels are left out (:data:`TARGET_LABELS`).
    """
    expression = str(rule["expr"])
    names: set[str] = set()
    for grouped in _BY.findall(expression):
        names.update(label_names(grouped))
    for _, matchers in _MATCHERS.findall(expression):
        names.update(label_names(matchers))
    names.update(_TEMPLATE_LABEL.findall(str(rule.get("annotations", ""))))
    return frozenset(names - TARGET_LABELS)


def rule_references() -> list[Reference]:
    """Each alert's metrics, each with the labels the alert uses."""
    return [
        Reference(f"alert {rule['alert']}", metric, rule_labels(rule))
        for rule in alerting_rules()
        for metric in sorted(metrics_of(str(rule["expr"])))
    ]
