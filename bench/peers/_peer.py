"""What every tracker in the comparison provides to the runner.

A peer installs itself (idempotently), loads the shared data set through its
own import path, serves it the way its documentation recommends for
production, and names the requests of each workload. The runner measures
every peer with the same load generators, so the peer modules hold no timing
code.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from bench.peers._export import DatasetMeta
from bench.peers._postgres import Cluster

#: One create call of the create workload; ``n`` numbers the request.
CreateCall = Callable[[int], Awaitable[None]]


@dataclass(frozen=True)
class ReadTargets:
    """The three read workloads as GET URLs (absolute) and the headers to send.

    Attributes:
        list_url: Open issues of one component, sorted by priority, 50 rows.
        search_url: Full-text search for the ~1% word.
        issue_url: The page of the issue with 30 extra comments.
        headers: Sent with every request (a session cookie, say).
        search10_url: The same search showing 10 results per page, Trac's
            fixed search page size (``None``: the peer cannot be asked for it).
    """

    list_url: str
    search_url: str
    issue_url: str
    headers: dict[str, str] = field(default_factory=dict)
    search10_url: str | None = None


@dataclass(frozen=True)
class PeerContext:
    """Where a peer keeps its files and data.

    Attributes:
        workdir: Root of everything installed and generated (``/work/peers``).
        cluster: The shared PostgreSQL server.
        dataset_dir: The exported data set.
        meta: What the data set holds.
    """

    workdir: Path
    cluster: Cluster
    dataset_dir: Path
    meta: DatasetMeta


class Peer(ABC):
    """One tracker under test."""

    #: Short name used in the table and on the command line.
    name: str = ""
    #: How it is served, for the table's footnotes.
    serving: str = ""

    def __init__(self, context: PeerContext) -> None:
        self.context = context
        self.home = context.workdir / f"{self.name}-{context.meta.issues}"
        self.home.mkdir(parents=True, exist_ok=True)

    @property
    def database(self) -> str:
        """This peer's database on the shared cluster (one per data set size)."""
        return f"{self.name}_{self.context.meta.issues}"

    @property
    def loaded_marker(self) -> Path:
        """Written once :meth:`load` has finished; its presence skips the load."""
        return self.home / "loaded"

    @abstractmethod
    def install(self) -> None:
        """Install the software (idempotent: a no-op when it is there)."""

    @abstractmethod
    def load(self) -> None:
        """Create the tracker and load the data set (no-op when already loaded)."""

    @abstractmethod
    def serve(self) -> AbstractContextManager[str]:
        """Start the production server; the context is its base URL; stop it on exit."""

    @abstractmethod
    def read_targets(self, base_url: str) -> ReadTargets:
        """The read workloads' requests."""

    @abstractmethod
    def create_call(self, base_url: str) -> tuple[CreateCall, Callable[[], Awaitable[None]]]:
        """A create call for the create workload, and a close function."""

    def reset_creates(self) -> None:  # noqa: B027 - optional hook
        """Remove issues a previous create workload added (beyond the data set)."""


def run(
    args: Sequence[str | os.PathLike[str]],
    *,
    log: Path | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 3600,
) -> None:
    """Run a setup command; its output goes to ``log`` (quoted on failure)."""
    out: IO[bytes] | int = log.open("ab") if log else subprocess.DEVNULL
    try:
        result = subprocess.run(
            [str(a) for a in args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            timeout=timeout,
            check=False,
        )
    finally:
        if not isinstance(out, int):
            out.close()
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:] if log else ""
        msg = f"{' '.join(str(a) for a in args)} exited with {result.returncode}\n{tail}"
        raise RuntimeError(msg)


@contextmanager
def spawned(
    args: Sequence[str | os.PathLike[str]],
    *,
    log: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    pass_fds: Sequence[int] = (),
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a process in its own session; on exit stop its whole process group.

    Stopping sends SIGTERM to the group (a server's workers too) and SIGKILL
    if anything is still there after 20 seconds.
    """
    with log.open("ab") as out:
        process = subprocess.Popen(
            [str(a) for a in args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
            pass_fds=tuple(pass_fds),
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@contextmanager
def server_process(
    args: Sequence[str | os.PathLike[str]],
    *,
    log: Path,
    ready_url: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120.0,
    pass_fds: Sequence[int] = (),
) -> Iterator[subprocess.Popen[bytes]]:
    """:func:`spawned`, then wait until ``ready_url`` answers below 500."""
    with spawned(args, log=log, env=env, cwd=cwd, pass_fds=pass_fds) as process:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                msg = f"{args[0]} exited with {process.returncode}:\n" + log.read_text()[-3000:]
                raise RuntimeError(msg)
            try:
                if httpx.get(ready_url, timeout=10.0).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                msg = f"{ready_url} not ready within {timeout:.0f}s:\n" + log.read_text()[-3000:]
                raise RuntimeError(msg)
            time.sleep(0.5)
        yield process


@contextmanager
def listening_socket() -> Iterator[socket.socket]:
    """A loopback TCP socket bound to a port the kernel picks, listening.

    Handed to a server that accepts an inherited socket (gunicorn's
    ``--bind fd://N``): the port is bound before the server starts, so no
    other process can take it in between, as it could a port chosen free,
    released, and named on the server's command line.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        sock.set_inheritable(True)
        yield sock
    finally:
        sock.close()


def port_of(sock: socket.socket) -> int:
    """The port ``sock`` is bound to."""
    port: int = sock.getsockname()[1]
    return port
