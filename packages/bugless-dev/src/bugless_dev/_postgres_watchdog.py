"""Stops a throwaway PostgreSQL and deletes its files once the process that started it is gone.

A :class:`~bugless_dev.postgres.ThrowawayPostgres` is stopped by its
starter (a test session's fixture, the HA drill, a benchmark) at the end;
a starter killed with SIGKILL, or by the OOM killer, runs no ``finally``,
and ``pg_ctl`` has made the server a daemon of its own: it ran on, holding
its port, its memory and its temporary directory, run after run.

So :func:`bugless_dev.postgres.start_postgres` starts this module as a
process of its own session (no terminal signal reaches it) holding the read
end of a pipe whose only write end the starter keeps. The kernel closes that
write end however the starter ends, and the read here then returns end of
file: the watchdog stops the server (``pg_ctl stop -m immediate``: its data
is thrown away next) and deletes its directory. A starter that stops the
server itself closes the write end afterwards, and the watchdog finds
nothing left to do. A pipe rather than polling the starter's pid: nothing to
poll, and no pid reused by another process can keep it waiting.

Run as ``python -m bugless_dev._postgres_watchdog FD ROOT BIN_DIR [USER]``:
the pipe's read end, the server's temporary directory (its data in
``ROOT/data``), its binaries, and the system user it runs as (none: the
caller's).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from bugless_dev._run_as import run_as_kwargs


def wait_for_the_starter(lifeline: int) -> None:
    """Return once every write end of the pipe ``lifeline`` reads from is closed."""
    while os.read(lifeline, 512):
        pass


def discard(root: Path, bin_dir: Path, run_as: str | None) -> None:
    """Stop the server whose data is ``root/data`` if it runs, then delete ``root``."""
    data = root / "data"
    if (data / "postmaster.pid").exists():
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                check=False,
                capture_output=True,
                timeout=60,
                **run_as_kwargs(run_as),
            )
    shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str]) -> int:
    """Wait for the starter to end, then discard its server; see the module docstring."""
    lifeline, root, bin_dir, *user = argv
    wait_for_the_starter(int(lifeline))
    discard(Path(root), Path(bin_dir), user[0] if user and user[0] else None)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
