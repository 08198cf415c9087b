"""Child processes of ``bugless dev``: start, wait until ready, stop in order.

Each service is a subprocess running the very command a deployment runs
(``bugless model serve``, ``bugless auth serve``, ``bugless api serve``,
``bugless web serve``, and ``postgres`` itself), with its output appended to
``STATE/logs/NAME.log``. Children run in their own session, so a Ctrl-C in the
terminal reaches only ``bugless dev``, which then stops them in order
(frontends, then backends, then PostgreSQL) with each one's own graceful
shutdown. On Linux every child also gets a parent-death signal, so killing
``bugless dev`` outright does not leave servers running behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bugless_core.clients import ServiceAddress

#: How a subprocess runs the ``bugless`` command of this interpreter's install
#: (works whether or not the console script is on PATH).
BUGLESS_COMMAND: tuple[str, ...] = (
    sys.executable,
    "-c",
    "from bugless_core.cli import main; main()",
)
START_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 30.0
_PR_SET_PDEATHSIG = 1
T = TypeVar("T")


class ServiceFailed(RuntimeError):
    """A child exited or did not become ready; the message quotes its log."""


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could bind ``host:port`` now (SO_REUSEADDR, like servers set)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when ``bugless dev`` dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes  # noqa: PLC0415

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file (for error messages)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Child:
    """One running child and how to stop it.

    Attributes:
        name: Short name (``postgres``, ``model``, ``auth``, ``api``, ``web``).
        process: The process.
        log: Its log file.
        stop_signal: What asks it to shut down gracefully (PostgreSQL: SIGINT,
            its "fast" shutdown; the bugless services: SIGTERM, their drain).
    """

    name: str
    process: asyncio.subprocess.Process
    log: Path
    stop_signal: signal.Signals = signal.SIGTERM
    stopping: bool = field(default=False)

    @property
    def exited(self) -> bool:
        """Whether the process has ended."""
        return self.process.returncode is not None

    def failure(self, what: str) -> ServiceFailed:
        """An error naming this child, quoting the end of its log."""
        return ServiceFailed(f"{self.name} {what} (log: {self.log}):\n{tail(self.log)}")

    async def wait_until(
        self, ready: Callable[[], Awaitable[bool]], within_seconds: float = START_TIMEOUT_SECONDS
    ) -> None:
        """Poll ``ready`` until true.

        Raises:
            ServiceFailed: the process exited first, or ``within_seconds`` passed.
        """
        deadline = time.monotonic() + within_seconds
        while time.monotonic() < deadline:
            if self.exited:
                raise self.failure(f"exited with {self.process.returncode} while starting")
            if await ready():
                return
            await asyncio.sleep(0.1)
        raise self.failure(f"was not ready within {within_seconds:.0f}s")

    async def stop(self, within_seconds: float = STOP_TIMEOUT_SECONDS) -> None:
        """Ask it to stop; kill it if it has not within ``within_seconds``."""
        self.stopping = True
        if self.exited:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(self.stop_signal)
        try:
            await asyncio.wait_for(self.process.wait(), within_seconds)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()

    def kill(self) -> None:
        """Stop now (a second Ctrl-C)."""
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()


async def spawn(
    name: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    log: Path,
    *,
    identity: Mapping[str, Any] | None = None,
    stop_signal: signal.Signals = signal.SIGTERM,
    cwd: Path | None = None,
) -> Child:
    """Start ``argv`` in its own session, output appended to ``log``.

    ``identity`` holds ``user``/``group``/``extra_groups`` to run it as
    another account (PostgreSQL, when ``bugless dev`` runs as root).
    """
    with log.open("ab") as out:
        out.write(f"\n---- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name}\n".encode())
        out.flush()
        process = await asyncio.create_subprocess_exec(
            *argv,
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            cwd=cwd,
            **(identity or {}),
        )
    return Child(name=name, process=process, log=log, stop_signal=stop_signal)


async def run_bugless(
    args: Sequence[str], env: Mapping[str, str], *, input_text: str | None = None
) -> str:
    """Run ``bugless ARGS...`` to completion and return its stdout.

    Raises:
        ServiceFailed: it exited non-zero; the message quotes its output.
    """
    process = await asyncio.create_subprocess_exec(
        *BUGLESS_COMMAND,
        *args,
        env=dict(env),
        stdin=asyncio.subprocess.PIPE if input_text is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await process.communicate(
            input_text.encode() if input_text is not None else None
        )
    except BaseException:  # cancelled by Ctrl-C: do not leave it running
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        raise
    if process.returncode != 0:
        msg = (
            f"`bugless {' '.join(args[:3])}` exited with {process.returncode}:\n"
            f"{out.decode(errors='replace')}{err.decode(errors='replace')}"
        )
        raise ServiceFailed(msg)
    return out.decode()


async def grpc_serving(address: ServiceAddress, service: str) -> bool:
    """Whether gRPC health says ``service`` is SERVING at ``address``."""
    from grpclib.health.v1.health_grpc import HealthStub  # noqa: PLC0415
    from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse  # noqa: PLC0415

    channel = address.channel()
    try:
        reply = await HealthStub(channel).Check(HealthCheckRequest(service=service), timeout=2.0)
    except Exception:  # any failure means "not up yet"
        return False
    finally:
        channel.close()
    serving: bool = reply.status == HealthCheckResponse.SERVING
    return serving


async def http_ready(url: str) -> bool:
    """Whether GET ``url`` answers 200 (the web frontend's ``/readyz``)."""

    def fetch() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2.0) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError, ssl.SSLError):
            return False

    return await asyncio.to_thread(fetch)


async def all_of(*aws: Awaitable[T]) -> list[T]:
    """Await concurrently; on the first failure cancel the rest and raise it.

    :func:`asyncio.gather` would leave the others running (writing to
    channels the caller is about to close); a task group does not, but
    raises an exception group, which callers here do not want to unpack.
    """
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_as_coroutine(aw)) for aw in aws]
    except BaseExceptionGroup as exc:
        first = exc.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    return [task.result() for task in tasks]


async def _as_coroutine(aw: Awaitable[T]) -> T:
    return await aw


def clean_environment() -> dict[str, str]:
    """This process's environment without ``BUGLESS_*`` (children get only ours).

    A developer's shell may export ``BUGLESS_MODEL_PORT`` or ``BUGLESS_API``
    for other work; letting them leak into the services would make ``bugless
    dev`` behave differently from one shell to the next.
    """
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("BUGLESS_") or key in {"BUGLESS_LOG_LEVEL"}
    }
