"""A test run killed with SIGKILL leaves no PostgreSQL behind.

``postgres_server`` stops its server at the end of the session, but a run
killed outright (SIGKILL, the OOM killer, a CI job's timeout) runs no
finaliser, and ``pg_ctl`` made the server a daemon of its own: before, it ran
on with its port and its temporary directory. Here a child pytest holds the
fixture's server and is killed; the server's watchdog must stop it and delete
its files.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HOLDER = """
import json
import os
import time


def test_hold_the_server(postgres_server):
    root = postgres_server._data_dir.parent
    pid = int((root / "data" / "postmaster.pid").read_text().split()[0])
    port = int(postgres_server.url.rsplit(":", 1)[1].split("/")[0])
    said = os.environ["HOLDER_SAYS"]
    with open(said + ".part", "w") as out:
        json.dump({"root": str(root), "pid": pid, "port": port}, out)
    os.replace(said + ".part", said)
    time.sleep(600)
"""
#: How long the server may take to go once its starter is killed.
GONE_WITHIN_SECONDS = 60.0


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie no one reaped yet has ended)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    state = next((line for line in status.splitlines() if line.startswith("State:")), "")
    return " Z " not in f"{state} " and "zombie" not in state


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait_for(path: Path, child: subprocess.Popen[bytes], seconds: float) -> dict[str, object]:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert child.poll() is None, f"the holding run ended: {child.returncode}"
        assert time.monotonic() < deadline, "the holding run did not start its server"
        time.sleep(0.1)
    found: dict[str, object] = json.loads(path.read_text())
    return found


def test_a_killed_run_leaves_no_postgres_behind(tmp_path: Path) -> None:
    (tmp_path / "test_holder.py").write_text(HOLDER)
    said = tmp_path / "server.json"
    env = {k: v for k, v in os.environ.items() if k != "BUGLESS_TEST_POSTGRES_URL"}
    env["HOLDER_SAYS"] = str(said)
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:asyncio",
            "-p",
            "bugless_testing.postgres",
            "test_holder.py",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pid = 0
    root = Path()
    try:
        server = _wait_for(said, child, seconds=180)
        pid, port, root = (
            int(str(server["pid"])),
            int(str(server["port"])),
            Path(str(server["root"])),
        )
        assert _running(pid)
        assert _accepts(port)
        assert root.is_dir()

        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)

        deadline = time.monotonic() + GONE_WITHIN_SECONDS
        while _running(pid) or root.exists():
            assert time.monotonic() < deadline, (
                f"{GONE_WITHIN_SECONDS} s after its run was killed: the server "
                f"{'runs' if _running(pid) else 'stopped'}, its directory "
                f"{'is still there' if root.exists() else 'is gone'}"
            )
            time.sleep(0.1)
        assert not _accepts(port)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if pid and _running(pid):  # the watchdog failed: do not leave it running either
            os.kill(pid, signal.SIGQUIT)
        if root != Path() and root.exists():
            shutil.rmtree(root, ignore_errors=True)
