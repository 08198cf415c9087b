"""Telling a supervisor where a service listens: the ready file.

A service started with ``--port 0`` binds whatever port the kernel gives it;
``--ready-file PATH`` then makes it write ``{"port", "metrics_port", "pid"}``
to PATH once it serves. The file is written to a temporary name and renamed,
so a reader never sees half of it. ``bugless dev``, the tests, the HA drill and
the benchmarks start services this way (:mod:`bugless_dev.processes`), so no
port is ever chosen by one process and bound later by another.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_ready_file(path: Path, *, port: int, metrics_port: int | None = None) -> None:
    """Write where this process listens to ``path`` (atomically)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(
        json.dumps({"port": port, "metrics_port": metrics_port, "pid": os.getpid()}) + "\n"
    )
    temporary.replace(path)


__all__ = ["write_ready_file"]
