"""``bugless web serve --workers N`` starts a crashed worker again, and gives up on a crash loop.

A real multi-worker web against the test stack; workers are crashed the way
the OOM killer does it (SIGKILL) and found through ``/proc``. Before, one
crashed worker made the parent stop the others and exit 1: the pod's whole
web tier went down until Kubernetes restarted it.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from browser_support import start_web_server
from prometheus_client.parser import text_string_to_metric_families
from web_support import World

from bugless_dev.stack import RunningService
from bugless_web.workers import CRASH_LOOP_CRASHES

WORKERS = {"BUGLESS_WEB_WORKERS": "2", "BUGLESS_LOG_JSON": "1"}
FAILING = "bugless_background_consecutive_failures"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _children(server: RunningService) -> list[int]:
    """The parent's child processes now (a crashed one until it is reaped, too)."""
    parent = server.process.pid
    try:
        return [int(p) for p in Path(f"/proc/{parent}/task/{parent}/children").read_text().split()]
    except FileNotFoundError:  # the parent has exited
        return []


def _wait_for(condition: Callable[[], bool], what: str, server: RunningService) -> None:
    """Wait until ``condition`` holds; fail saying ``what`` if it has not in a minute.

    A bound on a wait for an event, not a timed assertion.
    """
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within a minute"
        time.sleep(0.05)


def _records(server: RunningService) -> list[dict[str, Any]]:
    lines = server.log.read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def _started(server: RunningService) -> list[int]:
    """The workers' pids by number, from the parent's "started 2 web workers" record."""
    _wait_for(
        lambda: server.log.read_text().count("Application startup complete") >= 2,
        "both workers starting",
        server,
    )
    (started,) = [r for r in _records(server) if r["message"].startswith("started 2 web")]
    pids: list[int] = started["worker_pids"]
    return pids


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _samples(server: RunningService) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics") as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _answered(samples: Samples) -> float:
    return sum(v for (name, _), v in samples.items() if name == "http_server_requests_total")


def test_a_killed_worker_is_started_again_and_the_web_serves_on(world: World) -> None:
    server = start_web_server(world.stack, extra_env={**WORKERS, "BUGLESS_WEB_METRICS_PORT": "0"})
    try:
        killed, kept = _started(server)
        assert sorted(_children(server)) == sorted([killed, kept])
        assert [_get(f"{server.url}/no/such/page") for _ in range(4)] == [404] * 4
        _wait_for(lambda: _answered(_samples(server)) >= 4, "the 404s counted", server)
        answered = _answered(_samples(server))
        os.kill(killed, signal.SIGKILL)
        # The other worker serves meanwhile: the parent keeps running.
        assert [_get(f"{server.url}/readyz") for _ in range(5)] == [200] * 5
        _wait_for(lambda: len(set(_children(server)) - {killed, kept}) == 1, "a new worker", server)
        (new,) = set(_children(server)) - {killed, kept}
        _wait_for(
            lambda: server.log.read_text().count("Application startup complete") == 3,
            "the new worker starting",
            server,
        )
        assert sorted(_children(server)) == sorted([new, kept])
        assert [_get(f"{server.url}/no/such/page") for _ in range(4)] == [404] * 4
        samples: list[Samples] = []

        def sane() -> bool:
            samples[:] = [_samples(server)]
            loops = [
                (dict(labels), value)
                for (name, labels), value in samples[0].items()
                if name == FAILING
            ]
            return loops == [({"loop": "web.connection_windows"}, 0.0)] and (
                samples[0].get(("http_server_requests_in_flight", frozenset()), -1) == 0
            )

        # The killed worker's gauges leave with it; the new one's loop shows up.
        _wait_for(sane, "one loop streak and no request in flight", server)
        # Counters do not go back: the killed worker's counts stay in the sum.
        _wait_for(
            lambda: _answered(_samples(server)) >= answered + 4, "the new 404s counted", server
        )
    finally:
        world.stack.stop_service(server)
    assert server.process.returncode == 0  # a clean SIGTERM stop after a crash it recovered from
    assert not [pid for pid in (new, kept) if Path(f"/proc/{pid}").exists()]
    records = _records(server)
    (crashed,) = [r for r in records if r.get("worker_pid") == killed]
    assert crashed["message"] == (
        f"web worker 0 (pid {killed}) was killed by SIGKILL; starting it again in 0.1 s"
    )
    assert crashed["level"] == "ERROR"
    (again,) = [r for r in records if r["message"].startswith("started web worker 0 again")]
    assert again["worker_pids"] == [new, kept]
    assert {r["worker"] for r in records if r["pid"] == new and "worker" in r} == {0}


def test_workers_that_keep_crashing_end_the_parent(world: World) -> None:
    server = start_web_server(world.stack, extra_env=WORKERS)
    try:
        crashing, kept = _started(server)
        killed: list[int] = []
        while not server.process.exited:
            os.kill(crashing, signal.SIGKILL)
            killed.append(crashing)

            def replaced_or_ended() -> bool:
                return server.process.exited or bool(set(_children(server)) - {*killed, kept})

            _wait_for(replaced_or_ended, "a new worker or the parent's exit", server)
            if not server.process.exited:
                (crashing,) = set(_children(server)) - {*killed, kept}
        assert server.process.wait(timeout=60) == 1
    finally:
        world.stack.stop_service(server)
    assert len(killed) == CRASH_LOOP_CRASHES + 1
    assert not Path(f"/proc/{kept}").exists(), "the parent stopped the other worker"
    (gave_up,) = [r for r in _records(server) if "crash loop" in r["message"]]
    assert gave_up["message"] == (
        f"web worker 0 (pid {killed[-1]}) was killed by SIGKILL: {CRASH_LOOP_CRASHES + 1} "
        "crashes in the last 60 s, a crash loop; stopping the others"
    )
