"""Resident memory of a process, read from ``/proc`` (Linux): now, and its peak since a reset.

Tests and benchmarks that stream large files through a service use it to
show that the service's memory does not grow with the file: reset the peak
(``clear_refs``), move the file, read the peak back.
"""

from __future__ import annotations

from pathlib import Path

MIB = 1024 * 1024


def _status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) * 1024
    msg = f"/proc/{pid}/status has no {key}"
    raise RuntimeError(msg)


def rss(pid: int) -> int:
    """Bytes resident now (``VmRSS``)."""
    return _status(pid, "VmRSS")


def peak_rss(pid: int) -> int:
    """Highest resident bytes since the process started or :func:`reset_peak` (``VmHWM``)."""
    return _status(pid, "VmHWM")


def reset_peak(pid: int) -> None:
    """Start measuring the peak afresh (``echo 5 > /proc/PID/clear_refs``, Linux 4.0+)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
