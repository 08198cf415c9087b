"""``bugless web serve --workers N``: restarts that cannot hang, and stops that say how they went.

Real multi-worker webs against the test stack, crashed the way the OOM
killer does it (SIGKILL). The parent used to serve ``/metrics`` from threads
of its own and fork replacements beside them: a lock one of them held at the
fork (stderr's buffer while it wrote a traceback, an import's module lock)
stayed held in the new worker for good. And a worker that crashed just
before the pod's SIGTERM made the parent exit 1, a failed stop in a rolling
update's record.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from browser_support import start_web_server
from web_support import World
from worker_support import (
    WORKERS,
    alive,
    children,
    get_status,
    metrics_servers,
    records,
    started,
    wait_for,
)

from bugless_dev.processes import BUGLESS_COMMAND
from bugless_dev.stack import RunningService
from bugless_web.workers import CRASH_LOOP_CRASHES, START_WARNING_SECONDS


def _serving(server: RunningService, pid: int) -> bool:
    """Whether worker ``pid`` has said it serves."""
    return any(
        r["message"] == "Application startup complete." and r["pid"] == pid for r in records(server)
    )


def _ended(pid: int) -> bool:
    return not alive(pid)


def _grew(items: list[int], past: int) -> bool:
    return len(items) > past


def _serves_alone(server: RunningService, pid: int, others: list[int]) -> list[int]:
    """Statuses of requests answered while every worker but ``pid`` is stopped (SIGSTOP).

    ``/healthz``: the worker's own answer. ``/readyz`` would also time the
    worker's first calls to the backends (0.8 s, a new mTLS channel each),
    which a loaded test machine can exceed.
    """
    for other in others:
        os.kill(other, signal.SIGSTOP)
    try:
        return [get_status(f"{server.url}/healthz") for _ in range(3)]
    finally:
        for other in others:
            os.kill(other, signal.SIGCONT)


def test_workers_started_again_while_metrics_are_scraped_all_serve(world: World) -> None:
    """As many restarts as the crash-loop limit allows, under a continuous scrape.

    Four scrapers keep ``/metrics`` busy throughout, so that every fork of a
    replacement happens while scrapes run; the parent is sampled meanwhile
    and never has a second thread (the scrapes are served by a process of
    its own), and each replacement serves alone.
    """
    server = start_web_server(world.stack, extra_env={**WORKERS, "BUGLESS_WEB_METRICS_PORT": "0"})
    done = threading.Event()
    scraped: list[int] = []
    failures: list[str] = []
    threads_seen: set[int] = set()

    def scrape() -> None:
        url = f"http://127.0.0.1:{server.metrics_port}/metrics"
        while not done.is_set():
            try:
                with urllib.request.urlopen(url, timeout=30) as response:
                    response.read()
                    scraped.append(response.status)
            except OSError as exc:
                failures.append(repr(exc))

    def sample_parent() -> None:
        task = Path(f"/proc/{server.process.pid}/task")
        while not done.is_set():
            threads_seen.add(len(list(task.iterdir())))

    try:
        pids = started(server)
        workers = [threading.Thread(target=scrape) for _ in range(4)]
        workers.append(threading.Thread(target=sample_parent))
        for thread in workers:
            thread.start()
        try:
            for round_ in range(CRASH_LOOP_CRASHES):
                index = round_ % 2
                killed = pids[index]
                before = len(scraped)
                os.kill(killed, signal.SIGKILL)
                wait_for(lambda: len(set(children(server)) - set(pids)) == 1, "a new worker")
                (new,) = set(children(server)) - set(pids)
                pids[index] = new
                wait_for(functools.partial(_serving, server, new), f"worker {new} serving")
                others = [pid for pid in pids if pid != new]
                assert _serves_alone(server, new, others) == [200] * 3
                wait_for(
                    functools.partial(_grew, scraped, before + 4), "scrapes across the restart"
                )
        finally:
            done.set()
            for thread in workers:
                thread.join()
    finally:
        world.stack.stop_service(server)
    assert server.process.returncode == 0
    assert failures == []
    assert set(scraped) == {200}
    assert threads_seen == {1}, "the forking parent never runs a thread"
    restarted = [r for r in records(server) if r["message"].startswith("started web worker")]
    assert len(restarted) == CRASH_LOOP_CRASHES
    assert not [pid for pid in pids if alive(pid)]


def test_a_worker_crashed_just_before_sigterm_leaves_a_clean_stop(world: World) -> None:
    """The parent learns of the crash only after the SIGTERM: the stop is still clean (0).

    The parent is held (SIGSTOP) while a worker is killed and the SIGTERM
    sent, so that both wait for it at once, as when they come close
    together. Before, the parent took the dead worker for one that failed
    its drain and exited 1.
    """
    server = start_web_server(world.stack, extra_env=WORKERS)
    try:
        crashed, kept = started(server)
        parent = server.process.pid
        os.kill(parent, signal.SIGSTOP)
        try:
            os.kill(crashed, signal.SIGKILL)
            wait_for(lambda: not alive(crashed), "the worker's death")
            os.kill(parent, signal.SIGTERM)
        finally:
            os.kill(parent, signal.SIGCONT)
        assert server.process.wait(timeout=60) == 0
    finally:
        world.stack.stop_service(server)
    messages = [r["message"] for r in records(server) if r["pid"] == parent]
    assert (
        f"web worker 0 (pid {crashed}) was killed by SIGKILL; not started again: "
        "the server is stopping (SIGTERM)"
    ) in messages
    assert f"web worker 1 (pid {kept}) stopped" in messages
    assert messages[-1] == "web workers stopped; exiting with 0"
    assert not [m for m in messages if m.startswith("started web worker")]
    assert not alive(kept)


def test_a_worker_killed_while_draining_leaves_a_clean_stop_and_says_so(world: World) -> None:
    server = start_web_server(world.stack, extra_env={**WORKERS, "BUGLESS_WEB_DRAIN_SECONDS": "3"})
    try:
        crashed, _ = started(server)
        parent = server.process.pid
        os.kill(parent, signal.SIGTERM)

        def draining() -> bool:
            return any(
                r["pid"] == crashed and r["message"].startswith("SIGTERM: draining")
                for r in records(server)
            )

        wait_for(draining, "the worker's drain")
        os.kill(crashed, signal.SIGKILL)
        assert server.process.wait(timeout=60) == 0
    finally:
        world.stack.stop_service(server)
    logged = [r for r in records(server) if r["pid"] == parent]
    (lost,) = [r for r in logged if r.get("worker_pid") == crashed]
    assert lost["level"] == "ERROR"
    assert lost["message"] == (
        f"web worker 0 (pid {crashed}) was killed by SIGKILL while stopping; "
        "its requests still running were lost"
    )
    assert logged[-1]["message"] == "web workers stopped; exiting with 0"


def test_a_worker_stopped_before_it_serves_drains_once_it_does(world: World) -> None:
    """A SIGTERM that reaches a replacement still starting is kept until it serves.

    The replacement is held (SIGSTOP) as soon as it exists, long before
    uvicorn has installed its handlers, and the parent's SIGTERM passed on
    to it meanwhile. Before, Python's default handler killed it by SIGTERM
    and the parent exited 1.
    """
    server = start_web_server(world.stack, extra_env=WORKERS)
    try:
        crashed, kept = started(server)
        os.kill(crashed, signal.SIGKILL)
        wait_for(lambda: bool(set(children(server)) - {crashed, kept}), "a new worker")
        (new,) = set(children(server)) - {crashed, kept}
        os.kill(new, signal.SIGSTOP)
        try:
            assert not _serving(server, new)
            os.kill(server.process.pid, signal.SIGTERM)
            wait_for(lambda: not alive(kept), "the other worker's stop")
        finally:
            os.kill(new, signal.SIGCONT)
        assert server.process.wait(timeout=60) == 0
    finally:
        world.stack.stop_service(server)
    mine = [r["message"] for r in records(server) if r["pid"] == new]
    assert "SIGTERM arrived while the server was starting; handling it now" in mine
    assert f"web worker 0 (pid {new}) stopped" in [r["message"] for r in records(server)]


def test_the_workers_and_the_metrics_server_end_with_the_parent(world: World) -> None:
    """A parent killed outright (SIGKILL, the OOM killer) leaves no orphan serving the port.

    The kernel sends each worker SIGTERM (``PR_SET_PDEATHSIG``), and it drains
    as at a stop; the metrics server sees its pipe close. Before, the workers
    served on, unsupervised, holding the port a restarted parent needs.
    """
    server = start_web_server(world.stack, extra_env={**WORKERS, "BUGLESS_WEB_METRICS_PORT": "0"})
    pids = started(server)
    (metrics,) = metrics_servers(server)
    try:
        os.kill(server.process.pid, signal.SIGKILL)
        for pid in [*pids, metrics]:
            wait_for(functools.partial(_ended, pid), f"process {pid} ending")
    finally:
        for pid in [*pids, metrics]:  # an orphan must not outlive a failed test
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        world.stack.stop_service(server)
    drained = {r["pid"] for r in records(server) if r["message"].startswith("SIGTERM: draining")}
    assert drained == set(pids)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=5).close()


def test_a_worker_slow_to_serve_is_logged_until_it_serves(world: World) -> None:
    """A worker that does not serve takes no connection, and no probe shows it: the log does.

    The replacement is held (SIGSTOP) before it serves, past
    :data:`~bugless_web.workers.START_WARNING_SECONDS`, then let go.
    """
    server = start_web_server(world.stack, extra_env=WORKERS)
    try:
        crashed, kept = started(server)
        os.kill(crashed, signal.SIGKILL)
        wait_for(lambda: bool(set(children(server)) - {crashed, kept}), "a new worker")
        (new,) = set(children(server)) - {crashed, kept}
        os.kill(new, signal.SIGSTOP)
        try:
            wait_for(functools.partial(_logged, server, new, "has not started"), "the warning")
        finally:
            os.kill(new, signal.SIGCONT)
        wait_for(functools.partial(_logged, server, new, "serves"), "the worker serving")
        assert _serves_alone(server, new, [kept]) == [200] * 3
    finally:
        world.stack.stop_service(server)
    assert server.process.returncode == 0
    (warned,) = [r for r in records(server) if r.get("worker_pid") == new and "not" in r["message"]]
    assert warned["level"] == "WARNING"
    assert re.fullmatch(
        rf"web worker 0 \(pid {new}\) has not started serving (30|31) s after it was started; "
        "it takes no connection meanwhile",
        warned["message"],
    )
    (served,) = [
        r for r in records(server) if r.get("worker_pid") == new and "serves" in r["message"]
    ]
    assert served["level"] == "INFO"
    assert served["starting_seconds"] >= START_WARNING_SECONDS
    assert not [
        r for r in records(server) if r.get("worker_pid") == kept and "start" in r["message"]
    ]


def _logged(server: RunningService, pid: int, words: str) -> bool:
    """Whether the parent logged worker ``pid`` with ``words`` in its message."""
    return any(r.get("worker_pid") == pid and words in r["message"] for r in records(server))


def test_ctrl_c_in_a_terminal_drains_each_worker_once(world: World, tmp_path: Path) -> None:
    """Ctrl-C reaches every process of the terminal's foreground group; the parent adds none.

    The server runs with a pseudo-terminal as its controlling terminal, and
    ``^C`` is typed into it: the kernel sends SIGINT to the parent and to
    each worker. Before, the parent passed its own on as well, and a
    worker's second SIGINT means "exit now": its requests were cut, not
    drained. The two copies often merged into one (a signal pending twice
    is handled once), so the parent is held (SIGSTOP) until both workers
    drain, as when it is slow to wake: its copy then came second, always.
    """
    master, terminal = os.openpty()
    ready = tmp_path / "ready.json"
    log = tmp_path / "web.log"
    serve = [*BUGLESS_COMMAND, "web", "serve", "--dev", "--port", "0"]
    serve += [*world.stack.backend_flags(), "--ready-file", str(ready)]
    env = {**world.stack.env, **WORKERS, "BUGLESS_WEB_DRAIN_SECONDS": "5"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", _TAKE_TERMINAL_AND_EXEC, *serve],
            env=env,
            stdin=terminal,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    os.close(terminal)
    try:
        wait_for(
            lambda: log.read_text().count("Application startup complete") >= 2,
            "both workers serving",
        )
        os.kill(process.pid, signal.SIGSTOP)
        try:
            os.write(master, b"\x03")
            wait_for(
                lambda: log.read_text().count("SIGINT: draining") >= 2, "both workers draining"
            )
        finally:
            os.kill(process.pid, signal.SIGCONT)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
    logged = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    (started_record,) = [r for r in logged if r["message"].startswith("started 2 web workers")]
    pids = started_record["worker_pids"]
    assert not [r for r in logged if r["message"].startswith("second SIGINT")]
    drained = {r["pid"] for r in logged if r["message"].startswith("SIGINT: draining")}
    assert drained == set(pids)
    assert f"SIGINT: stopping web workers {sorted(pids)} (it reached them too)" in [
        r["message"] for r in logged if r["pid"] == process.pid
    ]


#: Run as a new session's leader: make stdin (a terminal) the controlling
#: terminal, then become ``bugless web serve`` (same pid).
_TAKE_TERMINAL_AND_EXEC = (
    "import fcntl, os, sys, termios; "
    "fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def test_a_crashed_metrics_server_is_started_again(world: World) -> None:
    """``/metrics`` comes back after its process is killed; the workers serve on meanwhile."""
    server = start_web_server(world.stack, extra_env={**WORKERS, "BUGLESS_WEB_METRICS_PORT": "0"})
    try:
        pids = started(server)
        (killed,) = metrics_servers(server)
        os.kill(killed, signal.SIGKILL)
        assert [get_status(f"{server.url}/readyz") for _ in range(3)] == [200] * 3
        wait_for(lambda: len(metrics_servers(server)) == 2, "a new metrics server")
        (new,) = metrics_servers(server) - {killed}
        assert alive(new)
        assert get_status(f"http://127.0.0.1:{server.metrics_port}/metrics") == 200
        assert sorted(children(server)) == sorted(pids)
    finally:
        world.stack.stop_service(server)
    assert server.process.returncode == 0
    assert not alive(new)
    (crashed,) = [
        r for r in records(server) if r.get("metrics_pid") == killed and r["level"] == "ERROR"
    ]
    assert crashed["message"] == (
        f"the metrics server (pid {killed}) was killed by SIGKILL; starting it again in 0.1 s"
    )


def test_the_ready_file_waits_for_every_worker(world: World) -> None:
    """``--ready-file`` with workers is the parent's, written once all of them serve.

    One worker is held (SIGSTOP) as soon as it exists; the other serves, and
    the file stays unwritten until the held one serves too. Before, each
    worker wrote it as it listened: a start counted as done at the first, and
    a benchmark measured a tier still importing its second worker.
    """
    args = ["web", "serve", "--dev", "--port", "0", *world.stack.backend_flags()]
    process = world.stack.spawn("web", args, env={**WORKERS, "BUGLESS_WEB_DRAIN_SECONDS": "0.2"})
    server = RunningService("web", process.name, process, 0)
    ready = process.ready_file
    assert ready is not None
    try:
        wait_for(lambda: len(children(server)) == 2, "two workers")
        held, other = children(server)
        os.kill(held, signal.SIGSTOP)
        try:
            wait_for(functools.partial(_serving, server, other), "the other worker serving")
            wait_for(functools.partial(_logged_by, server, other, "serving HTTP on"), "its log")
            time.sleep(1)  # the parent would have written it by now (it looks every 0.05 s)
            assert not ready.exists()
        finally:
            os.kill(held, signal.SIGCONT)
        running = world.stack.wait_started("web", process)
        assert json.loads(ready.read_text())["pid"] == process.pid
        assert _serving(server, held)
        assert get_status(f"{running.url}/readyz") == 200
    finally:
        world.stack.stop_service(server)
    assert process.returncode == 0
    (all_serve,) = [r for r in records(server) if r["message"] == "all 2 web workers serve"]
    assert sorted(all_serve["worker_pids"]) == sorted([held, other])


def _logged_by(server: RunningService, pid: int, words: str) -> bool:
    """Whether process ``pid`` logged a record starting with ``words``."""
    return any(r["pid"] == pid and r["message"].startswith(words) for r in records(server))
