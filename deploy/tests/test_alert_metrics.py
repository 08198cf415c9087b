"""Every metric the alerting rules read and the docs name is exported by the real services.

A rule on a metric nobody exports never fires, and nothing says so: a
renamed gauge or a typo in the rules file would be found in an outage. So
this starts every ``bugless … serve`` the chart runs (the Model, the
Authenticator, the API, the web tier with one worker and with two, the
notifier) as subprocesses on a real PostgreSQL, the way the other stack
tests do, with ``--metrics-port``; makes the API and the web look a person
up (their users' change feed gauge exists only once they follow the feed);
and reads each one's own ``/metrics`` as Prometheus would. The names and
labels the rules and the pages use (``metric_references``) must be on it.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from alert_rules import referenced_metrics
from metric_references import Reference, documented_references, rule_references
from prometheus_client.parser import text_string_to_metric_families

from bugless_api.client import BuglessClient
from bugless_dev.pki import LocalPki
from bugless_dev.stack import LocalStack, RunningService, StackConfig

if TYPE_CHECKING:
    from bugless_dev.postgres import ThrowawayPostgres

#: The processes the chart runs, by a name of this test's.
ALL = frozenset({"model", "auth", "api", "web", "web-workers", "notify"})
#: Which of them must export each metric the rules read. A new rule's metric
#: goes here too (a test fails until it does), with every process that serves it.
EXPORTERS: dict[str, frozenset[str]] = {
    "bugless_background_consecutive_failures": frozenset(
        {"model", "auth", "api", "web", "web-workers", "notify"}
    ),
    # A --workers parent serves the value its workers write every few seconds
    # (bugless_web/server.py; the outage itself: bugless-web's test_web_metrics).
    "bugless_background_outage_seconds": ALL,
    "bugless_notify_dead_letters_total": frozenset({"notify"}),
    "bugless_notify_saved_search_seed_backlog": frozenset({"notify"}),
    "bugless_schema_version_skew": frozenset({"model", "auth", "notify"}),
    "bugless_grpc_connection_window_bytes": ALL,
    "bugless_user_feed_last_read_timestamp_seconds": frozenset({"api", "web", "web-workers"}),
    "bugless_auth_user_changes_lag_seconds": frozenset({"auth"}),
    "bugless_auth_user_changes_poll_seconds": frozenset({"auth"}),
    "bugless_auth_user_changes_poll_failures_total": frozenset({"auth"}),
}
FEED_READ = "bugless_user_feed_last_read_timestamp_seconds"
METRICS_PORT = ("--metrics-port", "0")
_CSRF = re.compile(r'name="_csrf" value="([^"]+)"')
#: The sample names a family of each type can expose (a counter ``x`` is read as ``x_total``).
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}


#: Metrics a page or a rule names whose labels the scrape here may not show,
#: each with the test that shows the metric and its labels for real: a labelled
#: counter has no sample (and so no labels on ``/metrics``) until something is
#: counted, and the LDAP pool's only with the ldap backend. Where a scrape here
#: does show samples of one, its labels are checked here all the same; the
#: file named must use the metric and every label the pages give it.
SHOWN_ELSEWHERE: dict[str, str] = {
    "bugless_notify_dead_letters_total": "packages/bugless-notify/tests/test_dead_letters.py",
    "bugless_notify_claimed_total": "packages/bugless-notify/tests/test_dead_letters.py",
    "bugless_notify_deliveries_total": "packages/bugless-notify/tests/test_worker.py",
    "bugless_notify_attempt_seconds": "packages/bugless-notify/tests/test_worker.py",
    "bugless_notify_queue_errors_total": "packages/bugless-notify/tests/test_outage_logs.py",
    "bugless_auth_user_changes_poll_failures_total": (
        "packages/bugless-auth/tests/test_user_feed_lag.py"
    ),
    "bugless_auth_user_changes_answers_total": (
        "packages/bugless-auth/tests/test_user_changes_from_memory.py"
    ),
    "bugless_auth_ldap_pool_exhausted_total": "packages/bugless-auth/tests/test_ldap.py",
}
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Scrape:
    """What one ``/metrics`` offers a query: sample names, and the labels seen on each."""

    names: set[str] = field(default_factory=set)
    labels: dict[str, set[str]] = field(default_factory=dict)


def read_scrape(text: str) -> Scrape:
    """A scrape's names (:func:`exposed_names`) and each sample name's label names."""
    scrape = Scrape(names=exposed_names(text))
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            scrape.labels.setdefault(sample.name, set()).update(sample.labels)
    return scrape


def exposed_names(text: str) -> set[str]:
    """The metric names a scrape of ``text`` offers a query: each family's samples' names.

    A family declared without samples yet (a labelled counter nothing has
    counted, such as the dead letters) still offers its names: a rule on it
    is right, and fires once something is counted.
    """
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
    return names


async def _scrape(service: RunningService) -> Scrape:
    assert service.metrics_port is not None, f"{service.name} serves no /metrics"
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{service.metrics_port}/metrics", timeout=10)
    response.raise_for_status()
    return read_scrape(response.text)


def _start_every_service(stack: LocalStack) -> dict[str, RunningService]:
    """Each service the chart runs, with its ``/metrics``; the Authenticator first."""
    stack.migrate()
    started = {"auth": stack.start_auth(*METRICS_PORT)}
    started["model"] = stack.start_model(*METRICS_PORT)
    started["api"] = stack.start_api(*METRICS_PORT)
    started["web"] = stack.start_web(*METRICS_PORT)
    started["web-workers"] = stack.start_web(
        *METRICS_PORT, name="web-workers", env={"BUGLESS_WEB_WORKERS": "2"}
    )
    started["notify"] = stack.start_notify(*METRICS_PORT)
    return started


async def _show_a_person(stack: LocalStack, services: dict[str, RunningService]) -> None:
    """A bot assigns an issue to a person through the API; the person opens it on each web.

    The API translates the username and the web shows it: both look the
    person up, which starts their users' change feed follower.
    """
    person, password = f"alerts-{secrets.token_hex(3)}", secrets.token_urlsafe(12)
    await asyncio.to_thread(stack.add_user, person, password)
    bot = stack.add_bot(f"alerts-bot-{secrets.token_hex(3)}", admin=True)
    async with BuglessClient(
        f"127.0.0.1:{services['api'].port}",
        cert=bot.cert,
        key=bot.key,
        ca=stack.pki.ca_file,
        timeout=30,
    ) as client:
        component = await client.create_component(f"Alerts-{secrets.token_hex(3)}")
        issue = await client.create_issue("Watched by the alerts", component.id, assignee=person)
    for kind in ("web", "web-workers"):
        url = services[kind].url
        assert url is not None
        async with httpx.AsyncClient(base_url=url, follow_redirects=True, timeout=30) as http:
            form = await http.get("/signin")
            csrf = _CSRF.search(form.text)
            assert csrf is not None, form.text
            signed_in = await http.post(
                "/signin", data={"username": person, "password": password, "_csrf": csrf[1]}
            )
            assert "signin" not in str(signed_in.url), signed_in.text
            page = await http.get(f"/issues/{issue.id}")
            assert page.status_code == 200, page.text
            assert person in page.text


async def _until_following(services: dict[str, RunningService]) -> None:
    """Wait (30 s at most) until each frontend has read the feed since its look-up."""
    deadline = time.monotonic() + 30
    for kind in sorted(EXPORTERS[FEED_READ]):
        while FEED_READ not in (await _scrape(services[kind])).names:
            assert time.monotonic() < deadline, f"{kind} never read the users' change feed"
            await asyncio.sleep(0.2)


@pytest.fixture(scope="module")
async def exported(
    postgres_server: ThrowawayPostgres, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Scrape]:
    """What each running service's ``/metrics`` offers, by process."""
    directory = tmp_path_factory.mktemp("alert-metrics")
    stack = LocalStack(
        StackConfig(
            directory=directory,
            pki=LocalPki.open(directory / "pki"),
            model_database_url=await postgres_server.acreate_database("alerts_model"),
            auth_database_url=await postgres_server.acreate_database("alerts_auth"),
        )
    )
    try:
        services = await asyncio.to_thread(_start_every_service, stack)
        await _show_a_person(stack, services)
        await _until_following(services)
        return {kind: await _scrape(service) for kind, service in services.items()}
    finally:
        await asyncio.to_thread(stack.stop)


def test_the_exporter_table_names_exactly_the_metrics_the_rules_read() -> None:
    assert set(EXPORTERS) == referenced_metrics()


@pytest.mark.parametrize("metric", sorted(EXPORTERS))
def test_the_metric_is_exported_by_each_service_that_reports_it(
    metric: str, exported: dict[str, Scrape]
) -> None:
    assert set(exported) == ALL
    missing = sorted(kind for kind in EXPORTERS[metric] if metric not in exported[kind].names)
    assert not missing, f"{metric} is not on the /metrics of {missing}"


def test_a_renamed_metric_would_be_caught() -> None:
    """The name check is exact: a counter is offered as ``_total``, not as its family name."""
    text = (
        "# HELP bugless_notify_dead_letters_total Dead letters.\n"
        "# TYPE bugless_notify_dead_letters_total counter\n"
        "# HELP bugless_schema_version_skew Skew.\n"
        "# TYPE bugless_schema_version_skew gauge\n"
        'bugless_schema_version_skew{component="x"} 0.0\n'
    )
    names = exposed_names(text)
    assert {"bugless_notify_dead_letters_total", "bugless_schema_version_skew"} <= names
    assert "bugless_notify_dead_letters" not in names
    assert "bugless_schema_version_skews" not in names


def _unexported(references: list[Reference], exported: dict[str, Scrape]) -> list[str]:
    """What of ``references`` no service offers: a name, or a label on that name's samples."""
    wrong: list[str] = []
    for reference in references:
        offered = [scrape for scrape in exported.values() if reference.metric in scrape.names]
        seen = set().union(*(scrape.labels.get(reference.metric, set()) for scrape in offered))
        if reference.metric in SHOWN_ELSEWHERE and not seen:
            continue
        if not offered:
            wrong.append(f"{reference.where}: {reference.metric} is on no service's /metrics")
        elif reference.labels - seen:
            missing = sorted(reference.labels - seen)
            wrong.append(f"{reference.where}: {reference.metric} has no label {missing}")
    return wrong


def test_every_metric_and_label_the_rules_use_is_exported(exported: dict[str, Scrape]) -> None:
    wrong = _unexported(rule_references(), exported)
    assert not wrong, "\n".join(wrong)


def test_every_metric_and_label_the_docs_name_is_exported(exported: dict[str, Scrape]) -> None:
    references = documented_references()
    assert len({reference.metric for reference in references}) >= 20, "the pages were not read"
    wrong = _unexported(references, exported)
    assert not wrong, "\n".join(wrong)


def test_what_is_shown_elsewhere_is_shown_there() -> None:
    """Each metric left to another test is named, and its labels used, by that test."""
    named = [*rule_references(), *documented_references()]
    assert set(SHOWN_ELSEWHERE) <= {reference.metric for reference in named}, "a stale exemption"
    for metric, test_file in SHOWN_ELSEWHERE.items():
        labels = set().union(*(ref.labels for ref in named if ref.metric == metric))
        source = (ROOT / test_file).read_text(encoding="utf-8")
        family = metric.removesuffix("_total")
        assert family in source, f"{test_file} does not use {metric}"
        unused = sorted(label for label in labels if label not in source)
        assert not unused, f"{test_file} never names the label(s) {unused} of {metric}"


def test_a_wrong_label_or_name_would_be_caught() -> None:
    scrape = read_scrape(
        '# HELP bugless_x_total X.\n# TYPE bugless_x_total counter\nbugless_x_total{loop="a"} 1.0\n'
    )
    exported = {"one": scrape}
    right = Reference("page", "bugless_x_total", frozenset({"loop"}))
    assert not _unexported([right], exported)
    label = Reference("page", "bugless_x_total", frozenset({"loops"}))
    name = Reference("page", "bugless_y_total", frozenset())
    assert _unexported([label, name], exported) == [
        "page: bugless_x_total has no label ['loops']",
        "page: bugless_y_total is on no service's /metrics",
    ]
