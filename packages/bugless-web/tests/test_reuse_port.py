"""Several ``bugless web serve`` processes on one port (``--reuse-port``), for real.

Subprocesses of the real command against the test stack; readiness is read
over HTTP on loopback. Each process logs to its own folder, which is how the
tests know that *that* process is up (the port answers as soon as either is).
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

from browser_support import WebServer, start_web_server
from web_support import World

from bugless_core.testing.ports import free_port

REUSE = {"BUGLESS_WEB_REUSE_PORT": "1"}


def _ready(url: str) -> int:
    with urllib.request.urlopen(f"{url}/readyz", timeout=5) as response:
        return int(response.status)


def _started(server: WebServer) -> None:
    """Wait until this very process has started serving (its own log says so)."""
    deadline = time.monotonic() + 30
    while "Application startup complete" not in server.log.read_text():
        assert server.process.poll() is None, server.log.read_text()
        assert time.monotonic() < deadline, server.log.read_text()
        time.sleep(0.1)


def test_web_processes_with_reuse_port_share_a_port(world: World, tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = start_web_server(world.stack, tmp_path / "a", port=port, extra_env=REUSE)
    try:
        second = start_web_server(world.stack, tmp_path / "b", port=port, extra_env=REUSE)
        try:
            _started(second)
            first.stop()  # one process goes away: the port keeps serving
            assert first.process.returncode == 0
            assert [_ready(second.url) for _ in range(5)] == [200] * 5
            assert second.process.poll() is None
        finally:
            second.stop()
    finally:
        first.stop()


def test_without_reuse_port_a_second_process_cannot_take_the_port(
    world: World, tmp_path: Path
) -> None:
    port = free_port()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = start_web_server(world.stack, tmp_path / "a", port=port, extra_env=REUSE)
    try:
        # Its readiness check may be answered by the first process: wait for its exit.
        second = start_web_server(world.stack, tmp_path / "b", port=port)
        try:
            assert second.process.wait(timeout=30) != 0
            assert "address already in use" in second.log.read_text().lower()
        finally:
            second.stop()
    finally:
        first.stop()
