"""The web tier's Prometheus ``/metrics`` (``--metrics-port``), for real.

``bugless web serve`` runs as a subprocess against the test stack; pages are
fetched over HTTP on loopback and the endpoint is scraped the way Prometheus
does, then parsed with prometheus_client's own text parser.
"""

from __future__ import annotations

import functools
import http.cookiejar
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from browser_support import start_web_server
from prometheus_client.parser import text_string_to_metric_families
from web_support import PASSWORD, World, create_issue
from worker_support import metrics_servers

from bugless_dev.processes import ServiceFailed
from bugless_dev.stack import RunningService
from bugless_proto import v1

METRICS = {"BUGLESS_WEB_METRICS_PORT": "0"}
_CSRF = re.compile(r'name="_csrf" value="([^"]+)"')


def _samples(server: RunningService) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample ``server``'s endpoint serves, by (name, labels)."""
    assert server.metrics_port is not None, "the ready file names no metrics port"
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _status(opener: urllib.request.OpenerDirector, url: str, data: bytes | None = None) -> int:
    try:
        with opener.open(url, data=data, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def _browser() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )


@pytest.fixture
def web(world: World) -> Iterator[RunningService]:
    server = start_web_server(world.stack, extra_env=METRICS)
    try:
        yield server
    finally:
        world.stack.stop_service(server)


def test_the_channels_to_the_backends_show_their_flow_control_windows(
    web: RunningService,
) -> None:
    """A web replica's connections to the Model and Authenticator are in its ``/metrics``.

    The gauge an operator alerts on when a connection wedges (its window
    stuck near 0, every call on it timing out): read at scrape time, so an
    idle replica that served a page shows its channels with open windows.
    """
    url = web.url or ""
    assert _status(_browser(), f"{url}/signin") == 200  # a page that asks the backends
    samples = _samples(web)
    assert _value(samples, "bugless_grpc_connections", side="client") >= 1
    for direction in ("inbound", "outbound"):
        window = _value(
            samples,
            "bugless_grpc_connection_window_bytes",
            side="client",
            direction=direction,
            stat="min",
        )
        assert window > 0, (direction, window)
    # The web serves no gRPC: no server-side connections to report.
    assert _value(samples, "bugless_grpc_connections", side="server") == 0


def _signed_in(url: str, username: str = "bob") -> urllib.request.OpenerDirector:
    """A browser signed in to the web tier at ``url``."""
    browser = _browser()
    with browser.open(f"{url}/signin", timeout=10) as page:
        csrf = _CSRF.search(page.read().decode())
    assert csrf is not None
    form = {"username": username, "password": PASSWORD, "_csrf": csrf.group(1), "next": "/"}
    assert _status(browser, f"{url}/signin", urllib.parse.urlencode(form).encode()) == 200
    return browser


def test_pages_and_backend_calls_are_counted_by_route_and_code(web: RunningService) -> None:
    url = web.url or ""
    browser = _signed_in(url)
    assert _status(browser, f"{url}/search?q=is:open") == 200
    assert _status(browser, f"{url}/issues/999999999") == 404
    assert _status(browser, f"{url}/no/such/page") == 404
    assert _status(browser, f"{url}/search?q=priority:") == 400  # a query error is the user's

    samples = _samples(web)
    requests = "http_server_requests_total"
    assert _value(samples, requests, method="GET", route="/search", status="200") == 1
    assert _value(samples, requests, method="GET", route="/search", status="400") == 1
    # One series per route, not per issue: the id is not in the label.
    issue_404 = [
        labels
        for (name, labels), value in samples.items()
        if name == requests and ("status", "404") in labels and value == 1
    ]
    routes = sorted(dict(labels)["route"] for labels in issue_404)
    assert routes == ["(unmatched)", "/issues/{issue_text}"], routes
    assert _value(samples, "http_server_requests_in_flight") == 0
    assert (
        _value(samples, "http_server_request_duration_seconds_count", method="GET", route="/search")
        == 2
    )

    calls = "grpc_client_handled_total"
    model = "bugless.v1.Model"
    assert (
        _value(samples, calls, grpc_service=model, grpc_method="SearchIssues", grpc_code="OK") >= 1
    )
    assert (
        _value(samples, calls, grpc_service=model, grpc_method="GetIssue", grpc_code="NOT_FOUND")
        == 1
    )
    assert (
        _value(
            samples,
            calls,
            grpc_service="bugless.v1.Authenticator",
            grpc_method="ValidateToken",
            grpc_code="OK",
        )
        >= 1
    )
    assert (
        _value(
            samples,
            "grpc_client_handling_seconds_count",
            grpc_service=model,
            grpc_method="GetIssue",
        )
        == 1
    )


def _workers_of(server: RunningService, count: int) -> list[int]:
    deadline = time.monotonic() + 60
    while server.log.read_text().count("Application startup complete") < count:
        assert not server.process.exited, server.log.read_text()
        assert time.monotonic() < deadline, server.log.read_text()
        time.sleep(0.1)
    parent = server.process.pid
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [int(pid) for pid in children if int(pid) not in metrics_servers(server)]


def _is_stopped(pid: int) -> bool:
    """Whether ``pid`` is stopped by a signal (state ``T`` in ``/proc/<pid>/stat``)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2] == "T"


def _wait_for(condition: Callable[[], bool], what: str, server: RunningService) -> None:
    """Wait until ``condition`` holds; fail saying ``what`` if it has not in a minute.

    A bound on a wait for an event, not a timed assertion: on a loaded machine
    the event comes late, and the minute only ends a test that would hang.
    """
    deadline = time.monotonic() + 60
    while not condition():
        assert not server.process.exited, server.log.read_text()
        assert time.monotonic() < deadline, f"{what} did not happen within a minute"
        time.sleep(0.05)


def _quiet_samples(server: RunningService) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """A scrape taken once no request is in flight in any worker."""
    scraped: list[dict[tuple[str, frozenset[tuple[str, str]]], float]] = []

    def quiet() -> bool:
        scraped[:] = [_samples(server)]
        return _value(scraped[0], "http_server_requests_in_flight") == 0

    _wait_for(quiet, "the workers finishing their requests (in_flight 0)", server)
    return scraped[0]


def test_the_web_command_imports_no_prometheus_client_before_the_workers_metrics() -> None:
    # prometheus_client picks where values live on import: imported before
    # prepare_workers, ``--workers N`` refuses to start (as it did when
    # bugless_core.assertions imported the supervision's metrics for OutageLog).
    code = "import sys, bugless_web.commands; print('prometheus_client' in sys.modules)"
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert found.stdout.strip() == "False", found.stderr


def test_with_workers_the_parent_serves_the_sum_of_every_worker(world: World) -> None:
    """Each worker answers three requests while the other is stopped: the scrape says six.

    No request may be in flight when a worker is stopped (the stack's
    readiness probe, say), or it would still be in flight at the scrape, and
    a stop must have taken effect before the requests meant for the other
    worker go out. The parent never replaces a worker (one that exits stops
    the lot), so the same two pids must be there at the end: a worker that
    died would have taken none of its counts away, but would mean the test
    did not measure what it says.
    """
    server = start_web_server(world.stack, extra_env={**METRICS, "BUGLESS_WEB_WORKERS": "2"})
    try:
        workers = _workers_of(server, 2)
        assert len(workers) == 2
        _quiet_samples(server)
        browser = _browser()
        for stopped in workers:
            os.kill(stopped, signal.SIGSTOP)
            try:
                _wait_for(
                    functools.partial(_is_stopped, stopped), f"worker {stopped} stopping", server
                )
                for _ in range(3):
                    assert _status(browser, f"{server.url}/no/such/page") == 404
            finally:
                os.kill(stopped, signal.SIGCONT)
        samples = _quiet_samples(server)
        assert server.metrics_port not in (None, server.port)
        assert _workers_of(server, 2) == workers, "a worker was replaced during the test"
        assert (
            _value(
                samples,
                "http_server_requests_total",
                method="GET",
                route="(unmatched)",
                status="404",
            )
            == 6
        )
    finally:
        world.stack.stop_service(server)
    assert server.process.returncode == 0


def test_with_workers_the_parent_serves_the_workers_connection_windows(world: World) -> None:
    """A ``--workers 2`` parent's ``/metrics`` shows the windows of its workers' channels.

    The workers write them for the parent every few seconds, so the scrape
    is repeated until a worker's channels show; then the series are the
    same as one process serves: no ``pid`` label, a window for each
    direction of the client side, and none for the server side (the web
    serves no gRPC, so each worker writes "no connection", which the parent
    leaves out).
    """
    server = start_web_server(world.stack, extra_env={**METRICS, "BUGLESS_WEB_WORKERS": "2"})
    try:
        _workers_of(server, 2)
        assert _status(_browser(), f"{server.url}/signin") == 200  # a page that asks the backends
        scraped: list[dict[tuple[str, frozenset[tuple[str, str]]], float]] = []

        def channels_shown() -> bool:
            scraped[:] = [_samples(server)]
            return _value(scraped[0], "bugless_grpc_connections", side="client") >= 1

        _wait_for(channels_shown, "a worker's channels in the parent's /metrics", server)
        samples = scraped[0]
        for direction in ("inbound", "outbound"):
            labels = {"side": "client", "direction": direction, "stat": "min"}
            window = _value(samples, "bugless_grpc_connection_window_bytes", **labels)
            assert 0 < window < 2**31 - 1, (direction, window)
        assert _value(samples, "bugless_grpc_connections", side="server") == 0
        assert ("bugless_grpc_connections", frozenset({("side", "server")})) in samples
        shown = [labels for name, labels in samples if name.startswith("bugless_grpc_connection")]
        assert not [labels for labels in shown if "pid" in dict(labels)], shown
        assert not [
            labels
            for name, labels in samples
            if name == "bugless_grpc_connection_window_bytes" and ("side", "server") in labels
        ], "a window for the side no worker has a connection of"
    finally:
        world.stack.stop_service(server)
    assert server.process.returncode == 0


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_metrics_port_in_use_stops_the_start_with_the_reason(
    world: World, web: RunningService, workers: str
) -> None:
    assert web.metrics_port is not None
    taken = {"BUGLESS_WEB_METRICS_PORT": str(web.metrics_port), "BUGLESS_WEB_WORKERS": workers}
    with pytest.raises(ServiceFailed) as failed:
        start_web_server(world.stack, extra_env=taken)
    assert f"cannot serve metrics on 127.0.0.1:{web.metrics_port}" in str(failed.value)
    assert "address already in use" in str(failed.value).lower()


@pytest.mark.parametrize("setting", ["", "METRICS_"])
def test_an_ipv6_address_in_use_is_named_with_its_host_in_brackets(
    world: World, setting: str
) -> None:
    """Before: 'cannot listen on ::1:PORT', which reads as one address."""
    with socket.socket(socket.AF_INET6) as busy:
        busy.bind(("::1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        metrics = setting == "METRICS_"
        taken = {f"BUGLESS_WEB_{setting}HOST": "::1"}
        taken |= {"BUGLESS_WEB_METRICS_PORT": str(port) if metrics else "0"}
        with pytest.raises(ServiceFailed) as failed:  # the stack passes --port: the flag wins
            start_web_server(world.stack, extra_env=taken, port=0 if metrics else port)
    doing = "serve metrics" if metrics else "listen"
    assert f"cannot {doing} on [::1]:{port}: " in str(failed.value)


FEED_READ = "bugless_user_feed_last_read_timestamp_seconds"


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_the_users_change_feed_is_counted_and_its_last_read_shown(
    world: World, model: v1.ModelStub, workers: str
) -> None:
    """Each worker's GetUserChanges calls are counted; the gauge is its last successful read.

    Absent before a page showed anyone (the follower starts with the first
    look-up). With two workers, each is made to show a person (the other one
    stopped meanwhile), so both follow; the parent's gauge is the older of
    their last reads, so once it is past the moment both followed, both
    are reading the feed.
    """
    issue = await create_issue(model, world, "Feed metrics", assignee=world.users["carol"])
    env = {
        **METRICS,
        "BUGLESS_WEB_WORKERS": workers,
        "BUGLESS_WEB_USER_CACHE_SECONDS": "600",
        "BUGLESS_WEB_USER_CHANGES_SECONDS": "0.1",
    }
    server = start_web_server(world.stack, extra_env=env)
    try:
        pids = _workers_of(server, 2) if workers == "2" else [server.process.pid]
        assert FEED_READ not in {name for name, _ in _samples(server)}, "nobody shown yet"
        browser = _signed_in(server.url or "")
        for pid in pids:
            others = [other for other in pids if other != pid]
            for other in others:
                os.kill(other, signal.SIGSTOP)
                _wait_for(functools.partial(_is_stopped, other), f"worker {other} stopping", server)
            try:
                assert _status(browser, f"{server.url}/issues/{issue.id}") == 200
            finally:
                for other in others:
                    os.kill(other, signal.SIGCONT)
        followed = time.time()
        scraped: list[dict[tuple[str, frozenset[tuple[str, str]]], float]] = []

        def read_since() -> bool:
            scraped[:] = [_samples(server)]
            return _value(scraped[0], FEED_READ) >= followed

        _wait_for(read_since, "every worker reading the feed after it followed", server)
        assert _value(scraped[0], FEED_READ) <= time.time()
        calls = _value(
            scraped[0],
            "grpc_client_handled_total",
            grpc_service="bugless.v1.Authenticator",
            grpc_method="GetUserChanges",
            grpc_code="OK",
        )
        assert calls >= 2 * len(pids), "each worker's first read and one after the page"
    finally:
        world.stack.stop_service(server)
    assert server.process.returncode == 0


OUTAGE = "bugless_background_outage_seconds"


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_an_outage_in_a_worker_shows_in_the_scraped_metrics(
    world: World, model: v1.ModelStub, workers: str
) -> None:
    """The Authenticator the users' change feed is read from stops: the outage shows and grows.

    ``bugless_background_outage_seconds{loop}`` is what the alert on a long
    outage reads (deploy/helm/bugless/files/alerts.yaml); with ``--workers``
    the parent serves it for its workers, as a series with no ``pid`` label
    (the longest outage of a live worker), as one process serves its own.
    Each worker follows the feed (the follower starts with the first person
    shown, so each is made to show one, the other one stopped meanwhile);
    then the Authenticator they read it from is stopped for real.
    """
    issue = await create_issue(model, world, "Outage metrics", assignee=world.users["carol"])
    auth = world.stack.start("auth", ["auth", "serve", "--port", "0"], name="auth-outage")
    assert auth.address is not None
    env = {
        **METRICS,
        "BUGLESS_WEB_WORKERS": workers,
        "BUGLESS_WEB_USER_CACHE_SECONDS": "600",
        "BUGLESS_WEB_USER_CHANGES_SECONDS": "0.1",
    }
    try:
        server = start_web_server(world.stack, extra_env=env, auth_port=auth.address.port)
    except BaseException:
        world.stack.stop_service(auth)
        raise
    loop = {"loop": "user_cache.changes"}
    try:
        pids = _workers_of(server, 2) if workers == "2" else [server.process.pid]
        browser = _signed_in(server.url or "")
        for pid in pids:
            others = [other for other in pids if other != pid]
            for other in others:
                os.kill(other, signal.SIGSTOP)
                _wait_for(functools.partial(_is_stopped, other), f"worker {other} stopping", server)
            try:
                assert _status(browser, f"{server.url}/issues/{issue.id}") == 200
            finally:
                for other in others:
                    os.kill(other, signal.SIGCONT)
        scraped: list[dict[tuple[str, frozenset[tuple[str, str]]], float]] = []

        def scrape(condition: Callable[[float], bool]) -> Callable[[], bool]:
            """Whether the loop's longest outage (over every series of it) meets ``condition``."""

            def check() -> bool:
                scraped[:] = [_samples(server)]
                found = [
                    value
                    for (name, labels), value in scraped[0].items()
                    if name == OUTAGE and dict(labels).get("loop") == loop["loop"]
                ]
                return bool(found) and condition(max(found))

            return check

        _wait_for(scrape(lambda seconds: seconds == 0), "the follower's gauge, at 0", server)
        stopping = time.monotonic()  # a draining Authenticator already refuses calls
        world.stack.stop_service(auth)
        _wait_for(scrape(lambda seconds: seconds > 0), "the outage in the scraped metrics", server)
        # It is the outage's length, not a value written once: it grows.
        _wait_for(scrape(lambda seconds: seconds >= 2), "the outage lasting 2 s", server)
        assert _value(scraped[0], OUTAGE, **loop) <= time.monotonic() - stopping
        assert (OUTAGE, frozenset(loop.items())) in scraped[0], "one series per loop, no pid"
    finally:
        world.stack.stop_service(server)
        if auth in world.stack.services:
            world.stack.stop_service(auth)
    assert server.process.returncode == 0


FAILING = "bugless_background_consecutive_failures"


def test_a_worker_that_exited_leaves_no_series_of_its_loops(world: World) -> None:
    """A ``--workers 2`` parent serves a loop's failure streak of its live workers only.

    ``bugless_background_consecutive_failures`` is what
    ``BuglessBackgroundLoopFailing`` fires on (any series above 0). Each
    worker supervises its ``web.connection_windows`` loop; the gauge was
    merged as one series per worker (a ``pid`` label) that outlived the
    worker, so a worker that exited on a failure streak kept the alert
    firing for as long as the parent ran. It is now the streak of the live
    workers (no ``pid`` label), and a worker's part leaves with it. The
    worker is stopped the way one can be alone (SIGTERM: it drains and
    exits 0, and the parent serves on with the other).
    """
    server = start_web_server(world.stack, extra_env={**METRICS, "BUGLESS_WEB_WORKERS": "2"})
    loop = ("loop", "web.connection_windows")
    try:
        stopped, kept = _workers_of(server, 2)
        # A worker writes its windows (and registers the loop) once started.
        _wait_for(
            lambda: any(name == FAILING and loop in labels for name, labels in _samples(server)),
            "the workers' loop in the scraped metrics",
            server,
        )
        os.kill(stopped, signal.SIGTERM)
        _wait_for(lambda: not Path(f"/proc/{stopped}").exists(), "the worker exiting", server)
        assert _workers_of(server, 1) == [kept]
        series: list[tuple[dict[str, str], float]] = []

        def only_the_live_workers_streak() -> bool:
            series[:] = [
                (dict(labels), value)
                for (name, labels), value in _samples(server).items()
                if name == FAILING and loop in labels
            ]
            return series == [({"loop": "web.connection_windows"}, 0.0)]

        # The parent drops the worker's files just after it reaps it: a wait.
        _wait_for(only_the_live_workers_streak, "the exited worker's series leaving", server)
    finally:
        world.stack.stop_service(server)
    assert server.process.returncode == 0


def test_the_parent_reads_the_workers_files_while_one_is_still_being_created(
    tmp_path: Path,
) -> None:
    """A values file a worker has created but not sized yet is left out of the scrape.

    prometheus_client opens a worker's new file empty and sizes it a moment
    later; the parent's scrape in between failed on the missing length header
    and answered ``/metrics`` with a 500 (a CI run of the windows test above,
    while workers made their first loop rounds). The file here is real: the
    writer's own class wrote the worker's value, and the second file is empty
    as one is in that moment.
    """
    from prometheus_client import generate_latest
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    from bugless_web.metrics import workers_registry

    written = MmapedDict(str(tmp_path / "counter_4242.db"))  # type: ignore[no-untyped-call]
    key = mmap_key("bugless_example_total", "bugless_example_total", ["loop"], ["a"], "An example.")
    written.write_value(key, 3.0, 0.0)  # type: ignore[no-untyped-call]
    written.close()  # type: ignore[no-untyped-call]
    (tmp_path / "gauge_livemax_4343.db").touch()

    text = generate_latest(workers_registry(tmp_path)).decode()

    assert 'bugless_example_total{loop="a"} 3.0' in text
