"""Helpers for the tests of ``bugless web serve --workers N`` as real processes.

Workers are found through ``/proc`` and the parent's JSON log records; a
wait is a bound on an event, never a timed assertion.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bugless_dev.stack import RunningService

#: A multi-worker web that logs JSON records (the tests read them).
WORKERS = {"BUGLESS_WEB_WORKERS": "2", "BUGLESS_LOG_JSON": "1"}


def records(server: RunningService) -> list[dict[str, Any]]:
    """The JSON records the server logged so far (every process of it)."""
    lines = server.log.read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def children(server: RunningService) -> list[int]:
    """The parent's workers now (a crashed one until it is reaped, too).

    Its other children are the metrics servers its records name.
    """
    parent = server.process.pid
    try:
        pids = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    except FileNotFoundError:  # the parent has exited
        return []
    metrics = metrics_servers(server)
    return [int(pid) for pid in pids if int(pid) not in metrics]


def metrics_servers(server: RunningService) -> set[int]:
    """The pids of the parent's metrics servers so far, from its records (JSON or text)."""
    return {int(pid) for pid in re.findall(r'metrics_pid(?:=|": )(\d+)', server.log.read_text())}


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Wait until ``condition`` holds; fail saying ``what`` if it has not in a minute."""
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within a minute"
        time.sleep(0.05)


def started(server: RunningService) -> list[int]:
    """The workers' pids by number, once both serve, from the parent's "started" record."""
    wait_for(
        lambda: server.log.read_text().count("Application startup complete") >= 2,
        "both workers starting",
    )
    wait_for(
        lambda: any(r["message"].startswith("started 2 web") for r in records(server)),
        "the parent's record of them",
    )
    (record,) = [r for r in records(server) if r["message"].startswith("started 2 web")]
    pids: list[int] = record["worker_pids"]
    return pids


def get_status(url: str) -> int:
    """The HTTP status of a GET of ``url``."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
