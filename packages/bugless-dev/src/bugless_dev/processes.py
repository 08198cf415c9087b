"""Service processes of a local stack: start, learn the port, wait until ready, stop.

Each service is a subprocess running the very command a deployment runs
(``bugless model serve``, ``bugless web serve``, ``postgres`` …) with its
output appended to a log file, which failure messages quote. Children run in
their own session (a Ctrl-C in the terminal reaches only the parent, which
stops them in order) and, on Linux, get a parent-death signal, so a killed
parent leaves no server behind.

Ports are never guessed. A service started with ``--port 0 --ready-file F``
binds any free port and then writes ``F`` (JSON: ``port``, ``metrics_port``,
``pid``) atomically; :meth:`ServiceProcess.wait_ready_file` reads it back. A
port chosen by the parent and bound later by the child could be taken by
another process in between; this cannot.

Stopping is in three steps (:meth:`ServiceProcess.stop`): the stop signal,
then, for one still running after :data:`STOP_TIMEOUT_SECONDS`, the "stop
now" signal (a bugless service takes a second SIGTERM as "skip the rest of the
drain": a transfer it was waiting for, up to its 120 s bound, is cut), and only
for one still running :data:`STOP_NOW_SECONDS` after that, SIGKILL. Each late
step is a line in the service's log.

The API is synchronous (tests, the drill and the benchmarks call it from
plain code); ``bugless dev`` calls it from its event loop through
:func:`asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from bugless_core.clients import ServiceAddress
from bugless_core.parent_death import signal_on_parent_death

#: How a subprocess runs the ``bugless`` command of this interpreter's install
#: (works whether or not the console script is on PATH).
BUGLESS_COMMAND: tuple[str, ...] = (
    sys.executable,
    "-c",
    "from bugless_core.cli import main; main()",
)
START_TIMEOUT_SECONDS = 90.0
#: Whether a server's own ``SO_REUSEADDR`` bind may share a port that
#: :func:`reserve_port` holds: Linux's rule. BSD and macOS refuse the exact
#: same address and port to a second socket without ``SO_REUSEPORT``, so there
#: the reservation must be closed just before the server starts.
RESERVATION_ADMITS_SERVER = sys.platform.startswith("linux")
#: How long a stopping service may drain before it is asked to stop now.
STOP_TIMEOUT_SECONDS = 30.0
#: How long it then has to exit before it is killed.
STOP_NOW_SECONDS = 10.0
_T = TypeVar("_T")


class ServiceFailed(RuntimeError):
    """A child exited or did not become ready; the message quotes its log."""


def run_in_thread(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine to completion on a private loop in a helper thread.

    Usable from sync code and from inside a running loop alike, without
    touching the caller's loop (a pytest-asyncio session loop, say).
    """
    result: list[_T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:  # re-raised in the caller's thread
            error.append(exc)

    thread = threading.Thread(target=target, name="bugless-dev-helper")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the parent dies (Linux)."""
    signal_on_parent_death(signal.SIGTERM)


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file (for error messages)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class ReadyInfo:
    """What a service wrote to its ready file once it listened.

    Attributes:
        port: The port it serves on (gRPC or HTTP).
        metrics_port: Its Prometheus port, if it serves one.
        pid: Its process id.
    """

    port: int
    metrics_port: int | None
    pid: int


@dataclass
class ServiceProcess:
    """One running child and how to stop it.

    Attributes:
        name: Short name for messages and logs (``model``, ``api#2``, ``postgres``).
        process: The process (leader of its own session).
        log: Its output.
        stop_signal: What asks it to shut down gracefully (PostgreSQL: SIGINT,
            its fast shutdown; bugless services: SIGTERM, their drain).
        ready_file: Where it reports its port, when started with one.
        stop_now_signal: What asks it, once stopping, to stop now; None: the
            stop signal again (a bugless service's second SIGTERM ends its
            drain at once). PostgreSQL: SIGQUIT, its immediate shutdown.
    """

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    stop_signal: signal.Signals = signal.SIGTERM
    ready_file: Path | None = None
    stop_now_signal: signal.Signals | None = None

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        """Its exit status, once it has ended."""
        return self.process.poll()

    def wait(self, timeout: float | None = None) -> int:
        """Wait for it to end; its exit status.

        Raises:
            subprocess.TimeoutExpired: it still runs after ``timeout`` seconds.
        """
        return self.process.wait(timeout=timeout)

    @property
    def exited(self) -> bool:
        """Whether the process has ended."""
        return self.process.poll() is not None

    def output(self) -> str:
        """Everything it printed so far."""
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def failure(self, what: str) -> ServiceFailed:
        """An error naming this child, quoting the end of its log."""
        return ServiceFailed(f"{self.name} {what} (log: {self.log}):\n{tail(self.log)}")

    def wait_until(
        self, ready: Callable[[], bool], within_seconds: float = START_TIMEOUT_SECONDS
    ) -> None:
        """Poll ``ready`` until true.

        Raises:
            ServiceFailed: the process exited first, or ``within_seconds`` passed.
        """
        deadline = time.monotonic() + within_seconds
        while time.monotonic() < deadline:
            if self.exited:
                raise self.failure(f"exited with {self.process.returncode} while starting")
            if ready():
                return
            time.sleep(0.05)
        raise self.failure(f"was not ready within {within_seconds:.0f}s")

    def wait_ready_file(self, within_seconds: float = START_TIMEOUT_SECONDS) -> ReadyInfo:
        """Wait for the service to report where it listens (see the module docstring).

        Raises:
            ServiceFailed: it exited first, never wrote the file, or wrote nonsense.
        """
        path = self.ready_file
        if path is None:
            raise self.failure("was started without a ready file")
        self.wait_until(path.is_file, within_seconds)
        try:
            data = json.loads(path.read_text())
            return ReadyInfo(
                port=int(data["port"]),
                metrics_port=None
                if data.get("metrics_port") is None
                else int(data["metrics_port"]),
                pid=int(data["pid"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise self.failure(f"wrote an unreadable ready file {path}: {exc}") from exc

    def signal(self, signum: signal.Signals) -> None:
        """Send ``signum``, if it still runs."""
        if not self.exited:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    def stop(
        self,
        within_seconds: float = STOP_TIMEOUT_SECONDS,
        now_within_seconds: float = STOP_NOW_SECONDS,
    ) -> None:
        """Ask it to stop; after ``within_seconds``, to stop now; then kill it.

        A service still draining after ``within_seconds`` is waiting for
        something that will not end soon (a transfer that hung, with a 120 s
        bound): it gets the stop-now signal, which keeps its orderly exit
        (connections closed, logs flushed) without the wait. Only one still
        running ``now_within_seconds`` after that is killed. Both late steps
        are noted in its log, so a slow stop is explained where it is read.
        """
        if self.exited:
            return
        self.signal(self.stop_signal)
        if self._exits_within(within_seconds):
            return
        now = self.stop_now_signal or self.stop_signal
        self._note(f"still running {within_seconds:g}s after {self.stop_signal.name}: {now.name}")
        self.signal(now)
        if self._exits_within(now_within_seconds):
            return
        self._note(f"still running {now_within_seconds:g}s after {now.name}: SIGKILL")
        self.kill()
        self.process.wait()

    def _exits_within(self, seconds: float) -> bool:
        try:
            self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return False
        return True

    def _note(self, what: str) -> None:
        """Append a line about stopping it to its log (as :func:`spawn` notes its start)."""
        with contextlib.suppress(OSError), self.log.open("ab") as out:
            out.write(f"\n---- {time.strftime('%Y-%m-%d %H:%M:%S')} {what}\n".encode())

    def kill(self) -> None:
        """Stop now (SIGKILL)."""
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()


def spawn(
    name: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    log: Path,
    *,
    identity: Mapping[str, Any] | None = None,
    stop_signal: signal.Signals = signal.SIGTERM,
    stop_now_signal: signal.Signals | None = None,
    cwd: Path | None = None,
    ready_file: Path | None = None,
) -> ServiceProcess:
    """Start ``argv`` in its own session, output appended to ``log``.

    ``identity`` holds ``user``/``group``/``extra_groups`` to run it as
    another account (PostgreSQL, when the caller is root). A stale
    ``ready_file`` is removed first, so an old port is never read back.
    """
    if ready_file is not None:
        ready_file.unlink(missing_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n---- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name}\n".encode())
        out.flush()
        process = subprocess.Popen(
            list(argv),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - one prctl call, no locks taken
            cwd=cwd,
            **(identity or {}),
        )
    return ServiceProcess(
        name=name,
        process=process,
        log=log,
        stop_signal=stop_signal,
        ready_file=ready_file,
        stop_now_signal=stop_now_signal,
    )


def run_bugless(
    args: Sequence[str],
    env: Mapping[str, str],
    *,
    input_text: str | None = None,
    timeout: float = 120.0,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``bugless ARGS...`` to completion.

    Raises:
        ServiceFailed: ``check`` is true and it exited non-zero, or it did not
            finish within ``timeout`` seconds (killed); the message quotes its
            output, so ``bugless dev`` reports it as an error, not a traceback.
    """
    try:
        result = subprocess.run(
            [*BUGLESS_COMMAND, *args],
            env=dict(env),
            input=input_text,
            stdin=None if input_text is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        output = "".join(_text(part) for part in (exc.stdout, exc.stderr))
        msg = (
            f"`bugless {' '.join(args)}` did not finish within {timeout:g} s "
            f"(is the machine overloaded?); stopped it. Its output so far:\n{output}"
        )
        raise ServiceFailed(msg) from None
    if check and result.returncode != 0:
        msg = (
            f"`bugless {' '.join(args)}` exited with {result.returncode}:\n"
            f"{result.stdout}{result.stderr}"
        )
        raise ServiceFailed(msg)
    return result


def _text(output: str | bytes | None) -> str:
    """Captured output as text (a timed-out run may hand back bytes or nothing)."""
    if output is None:
        return ""
    return output if isinstance(output, str) else output.decode(errors="replace")


def unused_port() -> int:
    """A loopback port nothing listens on at this moment.

    Only for a port that must be named before its server starts (PostgreSQL,
    which cannot report a port it chose; HAProxy's configuration; a public
    URL that names the port). Another process may bind it in between, so the
    caller retries, or accepts a failed start. Where the server binds with
    ``SO_REUSEADDR`` (every bugless service does), :func:`reserve_port` has
    no such window. Everything else starts with ``--port 0`` and reads the
    port back (:meth:`ServiceProcess.wait_ready_file`).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def reserve_port() -> socket.socket:
    """Hold a free loopback port for a server that will bind it itself; close it after.

    For a port that must be named before its server starts, when the server
    cannot be handed a listening socket. The socket is bound (port 0, read
    back with ``getsockname()``) with ``SO_REUSEADDR`` and never listens. On
    Linux the kernel then gives the port to nobody else (not to ``bind(0)``,
    not to a bind without ``SO_REUSEADDR``, not to a second listener), while
    a server that sets ``SO_REUSEADDR`` itself (asyncio's and uvloop's
    ``create_server`` do by default, so every bugless service) binds and
    listens on it. Close the reservation once the server listens (or gave
    up); until then nothing else can take the port. Where
    :data:`RESERVATION_ADMITS_SERVER` is false, close it just before the
    server starts instead (a window of one process start, not of the whole
    wait).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


async def check_grpc_health(
    address: ServiceAddress, service: str, *, within_seconds: float = 2.0
) -> str | None:
    """The ``grpc.health.v1`` status name of ``service`` at ``address``, or None (async)."""
    from grpclib.health.v1.health_grpc import HealthStub  # noqa: PLC0415
    from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse  # noqa: PLC0415

    channel = address.channel()
    try:
        reply = await HealthStub(channel).Check(
            HealthCheckRequest(service=service), timeout=within_seconds
        )
    except Exception:  # unreachable, refused, timed out, TLS refused: no answer
        return None
    finally:
        channel.close()
    name: str = HealthCheckResponse.ServingStatus.Name(reply.status)
    return name


def grpc_status(address: ServiceAddress, service: str) -> str | None:
    """The ``grpc.health.v1`` status name of ``service`` at ``address``, or None."""
    return run_in_thread(check_grpc_health(address, service))


def grpc_serving(address: ServiceAddress, service: str) -> bool:
    """Whether gRPC health says ``service`` is SERVING at ``address``."""
    return grpc_status(address, service) == "SERVING"


def http_ready(url: str) -> bool:
    """Whether GET ``url`` answers 200 (the web frontend's ``/readyz``)."""
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


def clean_environment() -> dict[str, str]:
    """This process's environment without ``BUGLESS_*`` (children get only the stack's).

    A developer's shell may export ``BUGLESS_MODEL_PORT`` or ``BUGLESS_API``
    for other work; letting them leak into the services would make a local
    stack behave differently from one shell to the next.
    """
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("BUGLESS_") or key in {"BUGLESS_LOG_LEVEL"}
    }


__all__ = [
    "BUGLESS_COMMAND",
    "RESERVATION_ADMITS_SERVER",
    "ReadyInfo",
    "ServiceFailed",
    "ServiceProcess",
    "check_grpc_health",
    "clean_environment",
    "grpc_serving",
    "grpc_status",
    "http_ready",
    "reserve_port",
    "run_bugless",
    "run_in_thread",
    "spawn",
    "tail",
    "unused_port",
]
