"""Every metric the alerting rules read is exported by the real services, under that name.

A rule on a metric nobody exports never fires, and nothing says so: a
renamed gauge or a typo in the rules file would be found in an outage. So
this starts every ``bugless … serve`` the chart runs (the Model, the
Authenticator, the API, the web tier with one worker and with two, the
notifier) as subprocesses on a real PostgreSQL, the way the other stack
tests do, with ``--metrics-port``; makes the API and the web look a person
up (their users' change feed gauge exists only once they follow the feed);
and reads each one's own ``/metrics`` as Prometheus would.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from typing import TYPE_CHECKING

import httpx
import pytest
from alert_rules import referenced_metrics
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


async def _scrape(service: RunningService) -> set[str]:
    assert service.metrics_port is not None, f"{service.name} serves no /metrics"
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{service.metrics_port}/metrics", timeout=10)
    response.raise_for_status()
    return exposed_names(response.text)


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
        while FEED_READ not in await _scrape(services[kind]):
            assert time.monotonic() < deadline, f"{kind} never read the users' change feed"
            await asyncio.sleep(0.2)


@pytest.fixture(scope="module")
async def exported(
    postgres_server: ThrowawayPostgres, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, set[str]]:
    """The metric names each running service's ``/metrics`` offers, by process."""
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
    metric: str, exported: dict[str, set[str]]
) -> None:
    assert set(exported) == ALL
    missing = sorted(kind for kind in EXPORTERS[metric] if metric not in exported[kind])
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
