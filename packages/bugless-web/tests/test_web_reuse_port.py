"""Several ``bugless web serve`` processes on one port (``--reuse-port``), for real.

Subprocesses of the real command against the test stack; readiness is read
over HTTP on loopback. Each process logs to its own file, which is how the
tests know that *that* process is up (the port answers as soon as either is).
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from browser_support import start_web_server
from web_support import World

from bugless_dev.processes import ServiceFailed
from bugless_dev.stack import RunningService

REUSE = {"BUGLESS_WEB_REUSE_PORT": "1"}


def _ready(url: str) -> int:
    with urllib.request.urlopen(f"{url}/readyz", timeout=5) as response:
        return int(response.status)


def _started(server: RunningService) -> None:
    """Wait until this very process has started serving (its own log says so)."""
    deadline = time.monotonic() + 30
    while "Application startup complete" not in server.log.read_text():
        assert not server.process.exited, server.log.read_text()
        assert time.monotonic() < deadline, server.log.read_text()
        time.sleep(0.1)


def test_web_processes_with_reuse_port_share_a_port(world: World) -> None:
    first = start_web_server(world.stack, extra_env=REUSE)
    try:
        second = start_web_server(world.stack, port=first.port, extra_env=REUSE)
        try:
            _started(second)
            world.stack.stop_service(first)  # one process goes away: the port keeps serving
            assert first.process.returncode == 0
            assert [_ready(first.url or "") for _ in range(5)] == [200] * 5
            assert not second.process.exited
        finally:
            world.stack.stop_service(second)
    finally:
        world.stack.stop_service(first)


def test_without_reuse_port_a_second_process_cannot_take_the_port(world: World) -> None:
    first = start_web_server(world.stack, extra_env=REUSE)
    try:
        with pytest.raises(ServiceFailed) as failed:
            start_web_server(world.stack, port=first.port)
        assert "address already in use" in str(failed.value).lower()
    finally:
        world.stack.stop_service(first)


def _workers_of(server: RunningService, count: int) -> list[int]:
    """The pids of ``server``'s workers, once each says it has started serving."""
    deadline = time.monotonic() + 60
    while server.log.read_text().count("Application startup complete") < count:
        assert not server.process.exited, server.log.read_text()
        assert time.monotonic() < deadline, server.log.read_text()
        time.sleep(0.1)
    parent = server.process.pid
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [int(pid) for pid in children]


def test_workers_share_the_socket_and_each_serves(world: World) -> None:
    """``--workers 2``: two processes accept on one port, either alone keeps it serving.

    A stopped (SIGSTOP) worker accepts nothing, so every request answered
    while one is stopped was served by the other one.
    """
    server = start_web_server(world.stack, extra_env={"BUGLESS_WEB_WORKERS": "2"})
    try:
        workers = _workers_of(server, 2)
        assert len(workers) == 2
        for stopped, serving in (workers, workers[::-1]):
            os.kill(stopped, signal.SIGSTOP)
            try:
                assert [_ready(server.url or "") for _ in range(3)] == [200] * 3, serving
            finally:
                os.kill(stopped, signal.SIGCONT)
    finally:
        world.stack.stop_service(server)
    assert server.process.returncode == 0  # SIGTERM reached both workers; both drained
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "Z" in _state(pid)


def _json_records(log: Path) -> list[dict[str, Any]]:
    """The JSON lines of a log (a process may also print lines that are not records)."""
    lines = log.read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_each_workers_records_name_its_pid_and_number(world: World) -> None:
    """``--workers 2 --log-json``: one stream, three processes, every line says whose it is.

    The parent's records carry its pid and no worker; each worker's carry
    its own pid and its number, and the parent's "started" record lists the
    pids by number, so a line is traced to its worker through either.
    """
    server = start_web_server(
        world.stack, extra_env={"BUGLESS_WEB_WORKERS": "2", "BUGLESS_LOG_JSON": "1"}
    )
    try:
        workers = _workers_of(server, 2)
        assert [_ready(server.url or "") for _ in range(4)] == [200] * 4
    finally:
        world.stack.stop_service(server)
    records = _json_records(server.log)
    parent = server.process.pid
    (started,) = [r for r in records if r["message"].startswith("started 2 web workers")]
    assert started["pid"] == parent
    assert "worker" not in started
    by_number: list[int] = started["worker_pids"]
    assert sorted(by_number) == sorted(workers)
    startups = {
        (r["pid"], r["worker"]) for r in records if "Application startup complete" in r["message"]
    }
    assert startups == {(by_number[0], 0), (by_number[1], 1)}
    for record in records:
        if "worker" in record:
            assert record["pid"] == by_number[record["worker"]], record
        else:
            assert record["pid"] == parent, record


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
