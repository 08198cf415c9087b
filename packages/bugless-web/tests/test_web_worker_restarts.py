"""``bugless web serve --workers N`` starts a crashed worker again, and gives up on a crash loop.

A real multi-worker web against the test stack; workers are crashed the way
the OOM killer does it (SIGKILL) and found through ``/proc``. Before, one
crashed worker made the parent stop the others and exit 1: the pod's whole
web tier went down until Kubernetes restarted it.
"""

from __future__ import annotations

import os
import signal
import urllib.request
from pathlib import Path

from browser_support import start_web_server
from prometheus_client.parser import text_string_to_metric_families
from web_support import World
from worker_support import WORKERS, children, records, started, wait_for
from worker_support import get_status as _get

from bugless_dev.stack import RunningService
from bugless_web.workers import CRASH_LOOP_CRASHES, RESTART_BACKOFF_SECONDS

FAILING = "bugless_background_consecutive_failures"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


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
        killed, kept = started(server)
        assert sorted(children(server)) == sorted([killed, kept])
        assert [_get(f"{server.url}/no/such/page") for _ in range(4)] == [404] * 4
        wait_for(lambda: _answered(_samples(server)) >= 4, "the 404s counted")
        answered = _answered(_samples(server))
        os.kill(killed, signal.SIGKILL)
        # The other worker serves meanwhile: the parent keeps running.
        assert [_get(f"{server.url}/readyz") for _ in range(5)] == [200] * 5
        wait_for(lambda: len(set(children(server)) - {killed, kept}) == 1, "a new worker")
        (new,) = set(children(server)) - {killed, kept}
        wait_for(
            lambda: server.log.read_text().count("Application startup complete") == 3,
            "the new worker starting",
        )
        assert sorted(children(server)) == sorted([new, kept])
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
        wait_for(sane, "one loop streak and no request in flight")
        # Counters do not go back: the killed worker's counts stay in the sum.
        wait_for(lambda: _answered(_samples(server)) >= answered + 4, "the new 404s counted")
    finally:
        world.stack.stop_service(server)
    assert server.process.returncode == 0  # a clean SIGTERM stop after a crash it recovered from
    assert not [pid for pid in (new, kept) if Path(f"/proc/{pid}").exists()]
    logged = records(server)
    (crashed,) = [r for r in logged if r.get("worker_pid") == killed]
    assert crashed["message"] == (
        f"web worker 0 (pid {killed}) was killed by SIGKILL; starting it again in 0.1 s"
    )
    assert crashed["level"] == "ERROR"
    (again,) = [r for r in logged if r["message"].startswith("started web worker 0 again")]
    assert again["worker_pids"] == [new, kept]
    assert {r["worker"] for r in logged if r["pid"] == new and "worker" in r} == {0}


def test_workers_that_keep_crashing_end_the_parent(world: World) -> None:
    server = start_web_server(world.stack, extra_env=WORKERS)
    try:
        crashing, kept = started(server)
        killed: list[int] = []
        while not server.process.exited:
            os.kill(crashing, signal.SIGKILL)
            killed.append(crashing)

            def replaced_or_ended() -> bool:
                return server.process.exited or bool(set(children(server)) - {*killed, kept})

            wait_for(replaced_or_ended, "a new worker or the parent's exit")
            if not server.process.exited:
                (crashing,) = set(children(server)) - {*killed, kept}
        assert server.process.wait(timeout=60) == 1
    finally:
        world.stack.stop_service(server)
    assert len(killed) == CRASH_LOOP_CRASHES + 1
    assert not Path(f"/proc/{kept}").exists(), "the parent stopped the other worker"
    (gave_up,) = [r for r in records(server) if "crash loop" in r["message"]]
    assert gave_up["message"] == (
        f"web worker 0 (pid {killed[-1]}) was killed by SIGKILL: {CRASH_LOOP_CRASHES + 1} "
        "crashes in the last 60 s, a crash loop; stopping the others"
    )


#: Put on the server's PYTHONPATH: its first forked child exits 0 at once, before it serves
#: (as a library's fork handler ending the process cleanly would), claiming the file once.
_EXIT_ZERO_ONCE = """
import os

def _exit_zero_once():
    try:
        os.unlink(os.environ["EXIT_ZERO_ONCE_FILE"])
    except (KeyError, FileNotFoundError):
        return
    os._exit(0)

os.register_at_fork(after_in_child=_exit_zero_once)
"""


def test_a_worker_that_exits_0_before_it_serves_is_started_again_and_the_ready_file_appears(
    world: World, tmp_path: Path
) -> None:
    """Exiting 0 before serving is no drain: the worker is started again, with the crash back-off.

    Before, the parent took any exit with 0 for a worker that was sent SIGTERM
    alone and drained, and did not start it again: the ready file (written
    once every worker serves) never appeared, so this start timed out, and the
    pod would have served on fewer workers for good.
    """
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(_EXIT_ZERO_ONCE)
    claim = tmp_path / "exit-zero-once"
    claim.touch()
    env = {**WORKERS, "PYTHONPATH": str(hooks), "EXIT_ZERO_ONCE_FILE": str(claim)}
    server = start_web_server(world.stack, extra_env=env)
    try:
        assert not claim.exists(), "no child of the server exited"
        assert _get(f"{server.url}/readyz") == 200
        (restart,) = [r for r in records(server) if "starting it again in" in r["message"]]
        first = restart["worker_pid"]
        assert restart["message"] == (
            f"web worker {restart['exited_worker']} (pid {first}) exited with 0 before it "
            f"served; starting it again in {RESTART_BACKOFF_SECONDS:g} s"
        )
        assert restart["crashes"] == 1
        wait_for(lambda: len(children(server)) == 2, "two workers")
        assert first not in children(server)
        assert server.log.read_text().count("Application startup complete") == 2
    finally:
        world.stack.stop_service(server)
    assert server.process.wait(timeout=60) == 0
