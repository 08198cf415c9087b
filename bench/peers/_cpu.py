"""CPU each tracker spends per request: its own processes and PostgreSQL's.

Requests per second on a shared two-core machine say as much about the other
tenants as about the tracker; CPU seconds per request do not. While one
tracker is measured, its servers are the only descendants of this process
(the load generator ``wrk`` has exited by the time the second sample is
taken, and this process itself — the create workload's client — is left out),
and the shared PostgreSQL cluster serves only it, so both are attributed to
the tracker under test.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def process_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds user + system) for every live process."""
    out: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name (field 2) may hold spaces and parentheses: split after it.
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS)
    return out


def family(roots: set[int], processes: dict[int, tuple[int, float]]) -> set[int]:
    """``roots`` and every live descendant of them."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in processes.items():
        children.setdefault(parent, []).append(pid)
    seen: set[int] = set()
    todo = [r for r in roots if r in processes]
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(children.get(pid, ()))
    return seen


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds so far of the tracker's processes and of PostgreSQL's."""

    server: float
    postgres: float
    load: float


def sample(postmaster_pid: int) -> CpuSample:
    """CPU seconds of this process' descendants (not itself) and of the cluster."""
    processes = process_table()
    me = os.getpid()
    servers = family({me}, processes) - {me}
    postgres = family({postmaster_pid}, processes)
    return CpuSample(
        server=sum(processes[p][1] for p in servers - postgres),
        postgres=sum(processes[p][1] for p in postgres),
        load=os.getloadavg()[0],
    )


def postmaster_pid(data_dir: Path) -> int:
    """The cluster's postmaster, from the first line of ``postmaster.pid``."""
    return int((data_dir / "postmaster.pid").read_text().split()[0])
