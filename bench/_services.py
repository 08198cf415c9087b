"""The real services for the frontend benchmarks, as an operator runs them.

A throwaway PostgreSQL, then the Model and the Authenticator as ``bugless``
subprocesses, started by the one local-stack library
(:class:`bugless_dev.stack.LocalStack`: its PKI, bot certificates mapped in the
``tls`` backend, ports read back from each service), and on top either the API
frontend (``bugless api serve``, mTLS) or the web frontend (``bugless web
serve``, uvicorn). Also here:

* :func:`add_directory_users`: the seeded people (``user0001`` ..) put into
  the Authenticator's store under the *same* opaque ids the seeded issues
  carry, so every name join the frontends do finds a real user;
* :func:`serve_echo`: a bare grpclib echo service over the same mTLS
  settings, the transport floor the API is compared with;
* :class:`CpuMeter`: CPU seconds each service spent during a measurement;
* :func:`profile`: ``py-spy record`` of a service, summarised.

Every process started here is stopped by :meth:`BenchStack.stop`.
"""

from __future__ import annotations

import asyncio
import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import asyncpg
import httpx

from bugless_core import eventloop
from bugless_core.clients import ServiceAddress
from bugless_dev.pki import CertificateFiles, LocalPki
from bugless_dev.postgres import ThrowawayPostgres, start_postgres
from bugless_dev.processes import ServiceProcess, spawn
from bugless_dev.stack import LocalStack, RunningService, StackConfig
from bugless_testing.codecs import RawCodec

#: Password of every benchmark user that signs in (the web viewer).
VIEWER_PASSWORD = "bench-password-0123"
#: The seeded user the web benchmark signs in as (group ``eng``, like bench.search).
VIEWER = "user0042"
#: The Authenticator's schema (its default, which the stack runs with).
AUTH_SCHEMA = "bugless_auth"
#: Calls per second per identity: high enough that the limiter never refuses.
UNLIMITED_RATE = "1000000000"
PY_SPY = str(Path(sys.executable).with_name("py-spy"))


def load_average() -> str:
    """The 1-minute load average, for printing next to every figure."""
    return f"{os.getloadavg()[0]:.1f}"


def notify_source_at(ref: str, directory: Path) -> str:
    """``bugless_notify``'s source of git revision ``ref``, unpacked under ``directory``.

    The notifier benchmarks' ``--before REF`` puts the returned directory first
    on the notifier's ``PYTHONPATH``, so the old and the new notifier are
    measured in one run on the same services.
    """
    root = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"], check=True, capture_output=True, text=True
    ).stdout.strip()
    archive = subprocess.run(
        ["git", "-C", root, "archive", ref, "packages/bugless-notify/src"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    return str(directory / "packages" / "bugless-notify" / "src")


@dataclass
class BenchStack:
    """PostgreSQL, the Model, the Authenticator and the frontends, all running."""

    postgres: ThrowawayPostgres
    stack: LocalStack
    directory: Path
    frontends: list[RunningService] = field(default_factory=list)
    extra: list[ServiceProcess] = field(default_factory=list)
    _temporary: tempfile.TemporaryDirectory[str] | None = None

    @classmethod
    def start(cls, extra_env: dict[str, str] | None = None) -> BenchStack:
        """A fresh database server, the Model and the Authenticator (``extra_env`` for all)."""
        temporary = tempfile.TemporaryDirectory(prefix="bugless-bench-")
        directory = Path(temporary.name)
        postgres = start_postgres()
        try:
            stack = LocalStack(
                StackConfig(
                    directory=directory,
                    pki=LocalPki.open(directory / "pki"),
                    model_database_url=postgres.create_database("stack_model"),
                    auth_database_url=postgres.create_database("stack_auth"),
                    extra_env={"BUGLESS_LOG_LEVEL": "WARNING", **(extra_env or {})},
                )
            )
            stack.migrate()
            stack.start_backends()
        except BaseException:
            postgres.stop()
            temporary.cleanup()
            raise
        return cls(postgres=postgres, stack=stack, directory=directory, _temporary=temporary)

    def service_pids(self) -> dict[str, int]:
        """Process ids by service name (``postgres`` is the postmaster)."""
        pids = {"postgres": _postmaster_pid(self.stack.model_database_url)}
        for service in self.stack.services:
            pids[service.name] = service.process.pid
        for process in self.extra:
            pids[process.name] = process.pid
        return pids

    def models_before_after(self, before: str) -> dict[str, RunningService]:
        """The stack's Model as ``after`` and, with ``before``, a second one as ``before``.

        ``before`` is the ``packages/*/src`` of an older checkout (a
        ``PYTHONPATH``): the second Model (``model-before``) runs that code on
        the same database, so a bench can measure old and new code side by
        side under the same load. "" starts nothing more.
        """
        models = {"after": self.stack.first("model")}
        if before:
            models["before"] = self.stack.start(
                "model",
                ["model", "serve", "--port", "0"],
                name="model-before",
                env={"PYTHONPATH": before},
            )
        return models

    def model_call_params(self, user_id: str, groups: Sequence[str]) -> dict[str, Any]:
        """What a bench's client needs to call a Model as ``user_id`` in ``groups``.

        The CA, the API's certificate and key (a Model takes calls from the
        frontends' identities) and an identity assertion for the user, under
        the keys the benches' ``model_stub`` and call functions read.
        """
        identity = self.stack.identities["api"]
        return {
            "ca": str(self.stack.pki.ca_file),
            "model_cert": str(identity.cert),
            "model_key": str(identity.key),
            "assertion": self.stack.assertion_for(user_id, groups=list(groups)),
        }

    def start_api(
        self,
        processes: int = 1,
        *,
        name: str | None = None,
        flags: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> tuple[ServiceAddress, CertificateFiles]:
        """``bugless api serve`` with mTLS and a bot certificate (group ``eng``).

        With ``processes`` > 1, that many API processes share the port
        (``--reuse-port``), one per core; their pids are ``api``, ``api#2``...
        ``name`` (``api-before``) tells one API apart from another on the same
        backends; ``flags`` are extra serve flags and ``env`` extra variables
        (``PYTHONPATH`` of an older checkout's packages, to run its code).
        """
        bot = self.stack.add_bot("bench-bot", groups=["eng"])
        name = name or "api"
        args = [
            "api",
            "serve",
            *self.stack.backend_flags(),
            *self.stack.api_tls_flags(),
            "--rate",
            UNLIMITED_RATE,
            "--burst",
            UNLIMITED_RATE,
            *(["--reuse-port"] if processes > 1 else []),
            *flags,
        ]
        first = self.stack.start("api", [*args, "--port", "0"], name=name, env=env)
        self.frontends.append(first)
        for index in range(2, processes + 1):
            self.frontends.append(
                self.stack.start(
                    "api", [*args, "--port", str(first.port)], name=f"{name}#{index}", env=env
                )
            )
        address = ServiceAddress(
            "127.0.0.1", first.port, ca=self.stack.pki.ca_file, cert=bot.cert, key=bot.key
        )
        return address, bot

    def start_web(self, *flags: str, env: dict[str, str] | None = None, dev: bool = True) -> str:
        """``bugless web serve`` (plain HTTP, ``--dev`` for a non-Secure cookie); its URL.

        ``dev=False`` serves as production does (templates are not checked
        for changes on every render; the cookie is ``Secure``, so a client
        on plain HTTP has to send it back by hand).
        """
        web = self.stack.start_web("--grace-seconds", "1", *flags, env=env, dev=dev)
        self.frontends.append(web)
        assert web.url is not None
        return web.url

    def start_echo(self, payload_size: int) -> tuple[ServiceAddress, int]:
        """The bare grpclib echo service (mTLS, same CA); its address and pid."""
        pki = self.stack.pki
        client = pki.issue_client_certificate("echo-client")
        ready = self.directory / "run" / "echo.json"
        ready.parent.mkdir(parents=True, exist_ok=True)
        process = spawn(
            "echo",
            [
                sys.executable,
                "-c",
                "from bench._services import serve_echo; import sys; serve_echo(*sys.argv[1:])",
                str(ready),
                str(self.stack.server.cert),
                str(self.stack.server.key),
                str(pki.ca_file),
            ],
            self.stack.env,
            self.directory / "logs" / "echo.log",
            cwd=Path(__file__).resolve().parent.parent,
            ready_file=ready,
        )
        self.extra.append(process)
        info = process.wait_ready_file()
        address = ServiceAddress(
            "127.0.0.1", info.port, ca=pki.ca_file, cert=client.cert, key=client.key
        )
        asyncio.run(_echo_once(address, b"x" * payload_size))
        return address, process.pid

    def stop_frontend(self, name: str) -> None:
        """Stop one frontend (or the echo server) started here."""
        for service in [f for f in self.frontends if f.name == name]:
            self.stack.stop_service(service)
            self.frontends.remove(service)
        for process in [p for p in self.extra if p.name == name]:
            process.stop()
            self.extra.remove(process)

    def stop(self) -> None:
        """Stop every process and remove the temporary files."""
        for process in self.extra:
            process.stop()
        self.extra.clear()
        self.frontends.clear()
        self.stack.stop()
        self.postgres.stop()
        if self._temporary is not None:
            self._temporary.cleanup()


def _postmaster_pid(database_url: str) -> int:
    async def data_directory() -> str:
        conn = await asyncpg.connect(database_url)
        try:
            directory: str = await conn.fetchval("SHOW data_directory")
        finally:
            await conn.close()
        return directory

    pid_file = Path(asyncio.run(data_directory()), "postmaster.pid")
    return int(pid_file.read_text().split()[0])


#: The columns :func:`add_directory_users` fills, as the Authenticator's store writes them.
USER_COLUMNS = (
    "user_id",
    "username",
    "display_name",
    "email",
    "groups",
    "username_key",
    "username_fold",
    "display_name_fold",
    "email_fold",
)


async def add_directory_users(stack: LocalStack, users: int, *, viewer: str = VIEWER) -> None:
    """Put the seeded people into the Authenticator's store under their seeded ids.

    ``user0001`` .. are inserted with username = id, display name ``User 0001``
    and group ``eng``; ``viewer`` also gets a local password
    (:data:`VIEWER_PASSWORD`) so it can sign in to the web frontend. The
    hash uses the stack's (cheap) argon2 parameters, so it is never rehashed.
    """
    from bugless_auth.name_keys import folds  # noqa: PLC0415
    from bugless_auth.passwords import PasswordHashes  # noqa: PLC0415
    from bugless_auth.settings import PasswordHashing  # noqa: PLC0415
    from bugless_core.usernames import username_key  # noqa: PLC0415

    env = stack.env
    hashes = PasswordHashes(
        PasswordHashing(
            time_cost=int(env["BUGLESS_AUTH_ARGON2_TIME_COST"]),
            memory_kib=int(env["BUGLESS_AUTH_ARGON2_MEMORY_KIB"]),
            parallelism=int(env["BUGLESS_AUTH_ARGON2_PARALLELISM"]),
        )
    )
    password_hash = await hashes.hash(VIEWER_PASSWORD)
    # The keys and folds the store writes with every user (auth migrations 0010,
    # 0011), by its own functions: a row without them is found by no sign-in.
    rows = []
    for k in range(1, users + 1):
        username, display, email = f"user{k:04d}", f"User {k:04d}", f"user{k:04d}@example.org"
        rows.append(
            (username, username, display, email, ["eng"], username_key(username),
             *folds(username, display, email))
        )  # fmt: skip
    conn = await asyncpg.connect(
        stack.auth_database_url, server_settings={"search_path": AUTH_SCHEMA}
    )
    try:
        async with conn.transaction():
            await conn.copy_records_to_table(
                "users",
                records=rows,
                columns=[*USER_COLUMNS],
            )
            await conn.execute(
                "INSERT INTO local_credentials (user_id, password_hash) VALUES ($1, $2)",
                viewer,
                password_hash,
            )
            await conn.execute(
                "INSERT INTO external_subjects (subject, user_id, authenticator) "
                "VALUES ($1, $2, 'local')",
                f"local:{viewer}",
                viewer,
            )
    finally:
        await conn.close()


# ---- CPU accounting ----


class CpuMeter:
    """CPU seconds (user + system) per service between :meth:`start` and :meth:`stop`.

    Read from ``/proc/<pid>/stat``. ``postgres`` counts the postmaster and
    every backend under it, a web tier (``web*``) its ``--workers``. A child
    that exits mid-measurement (a pool closing an idle connection) takes its
    CPU out of the live processes' sum; its parent's reaped-children time
    (``cutime + cstime``) then grows by the child's whole lifetime, so the
    child counts as that growth minus what it had used at :meth:`start`
    (without this, such rows read negative).
    """

    def __init__(self, pids: dict[str, int]) -> None:
        """Watch ``pids`` (name to pid)."""
        self.pids = pids
        self._before: dict[str, _Family] = {}
        self.seconds: dict[str, float] = {}

    def _sample(self) -> dict[str, _Family]:
        stats = _proc_stats()
        out: dict[str, _Family] = {}
        for name, pid in self.pids.items():
            family = {pid}
            if name == "postgres" or name.startswith("web"):
                # The postmaster's backends, a web tier's --workers.
                family |= {p for p, stat in stats.items() if stat.parent == pid}
            reaped = stats[pid].reaped if pid in stats else 0.0
            out[name] = _Family({p: stats[p].cpu for p in family if p in stats}, reaped)
        return out

    def start(self) -> None:
        """Take the first sample."""
        self._before = self._sample()

    def stop(self) -> dict[str, float]:
        """CPU seconds per service since :meth:`start`."""
        after = self._sample()
        self.seconds = {
            name: family.since(self._before.get(name, family)) for name, family in after.items()
        }
        return self.seconds


class _Family(NamedTuple):
    """One service's processes at a sample: CPU seconds by pid, and its reaped children's."""

    cpu: dict[int, float]
    reaped: float

    def since(self, before: _Family) -> float:
        """CPU seconds the family used between ``before`` and this sample."""
        live = sum(cpu - before.cpu.get(pid, 0.0) for pid, cpu in self.cpu.items())
        gone = sum(cpu for pid, cpu in before.cpu.items() if pid not in self.cpu)
        return live + max(0.0, self.reaped - before.reaped - gone)


class _Stat(NamedTuple):
    parent: int
    cpu: float
    reaped: float


_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_stats() -> dict[int, _Stat]:
    """pid -> (parent pid, CPU seconds, reaped children's CPU seconds) of every process."""
    out: dict[int, _Stat] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after "pid (comm)": state ppid ... utime(11) stime(12) cutime(13) cstime(14),
        # 0-based from state
        out[int(entry)] = _Stat(
            int(fields[1]),
            (int(fields[11]) + int(fields[12])) / _TICKS,
            (int(fields[13]) + int(fields[14])) / _TICKS,
        )
    return out


# ---- profiling ----


def profile(pid: int, seconds: float, output: Path) -> subprocess.Popen[bytes]:
    """Start ``py-spy record`` (raw collapsed stacks, on-CPU only) of ``pid``."""
    if not Path(PY_SPY).exists() and shutil.which("py-spy") is None:
        raise RuntimeError("py-spy is not installed: pip install py-spy into the venv")
    return subprocess.Popen(
        [
            PY_SPY if Path(PY_SPY).exists() else "py-spy",
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "200",
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            str(output),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _frame_name(frame: str) -> str:
    """``func (path/to/module.py:12)`` -> ``func (module.py)`` without line numbers."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if parts else path
    for marker in ("site-packages/", "src/"):
        if marker in path:
            short = path.split(marker, 1)[1]
    return f"{name} ({short})"


_PLUMBING = ("asyncio/", "click/", "runpy", "bugless_core/cli.py", "(<string>)", "threading")


def _is_plumbing(name: str) -> bool:
    return any(marker in name for marker in _PLUMBING) or name.startswith("serve_command")


def summarize_profile(raw: Path, top: int = 15) -> str:
    """Top frames by self time and by inclusive time from py-spy's raw output."""
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";")[1:] if f]  # [0] is the thread
        if not frames:
            continue
        total += count
        self_time[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    if not total:
        return "  (no samples)"
    lines = [f"  {total} on-CPU samples; self time:"]
    lines += [f"    {n / total:6.1%}  {name}" for name, n in self_time.most_common(top)]
    lines.append("  inclusive time (event loop, click and runner frames left out):")
    shown = [(name, n) for name, n in inclusive.most_common() if not _is_plumbing(name)]
    lines += [f"    {n / total:6.1%}  {name}" for name, n in shown[: top * 2]]
    return "\n".join(lines)


# ---- the transport floor: a bare grpclib echo service ----


ECHO_METHOD = "/bench.Echo/Echo"


class _EchoService:
    def __mapping__(self) -> dict[str, Any]:
        from grpclib.const import Cardinality, Handler  # noqa: PLC0415

        return {ECHO_METHOD: Handler(self.echo, Cardinality.UNARY_UNARY, None, None)}

    async def echo(self, stream: Any) -> None:
        message = await stream.recv_message()
        await stream.send_message(message)


def serve_echo(ready_file: str, cert: str, key: str, ca: str) -> None:
    """Serve the echo method on a free loopback port with mTLS until SIGTERM.

    The server ``bench.transport`` measures (:func:`bench._transport_serve.run_corked_server`:
    a bare ``CorkedServer``, the services' TLS context, port 0 read back and
    written to ``ready_file``, the garbage collector settled as the services
    settle theirs), passing the message through as bytes, on the event loop of
    the services it is the floor of.
    """
    from bench._transport_serve import ServerTls, run_corked_server  # noqa: PLC0415

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        tls = ServerTls(Path(cert), Path(key), Path(ca))
        await run_corked_server([_EchoService()], tls, Path(ready_file), stop, codec=RawCodec())

    eventloop.run(main())


async def _echo_once(address: ServiceAddress, payload: bytes) -> None:
    from grpclib.client import Channel, UnaryUnaryMethod  # noqa: PLC0415

    channel = Channel(
        address.host,
        address.port,
        ssl=address.ssl_context(),
        codec=RawCodec(),
    )
    try:
        method: UnaryUnaryMethod[bytes, bytes] = UnaryUnaryMethod(
            channel, ECHO_METHOD, bytes, bytes
        )
        await method(payload, timeout=2)
    finally:
        channel.close()


#: The Model and the Authenticator serve Prometheus metrics when started with
#: these: their call counters say how many backend calls a measured window
#: made (how large the API's batches were, what one web page asks of them).
METRICS_ENV = {"BUGLESS_MODEL_METRICS_PORT": "0", "BUGLESS_AUTH_METRICS_PORT": "0"}
_HANDLED = re.compile(r"^grpc_server_handled_total\{([^}]*)\} ([0-9.e+]+)$", re.MULTILINE)


def grpc_calls(stack: LocalStack) -> dict[str, float]:
    """Calls each backend has handled so far, by ``service.Method`` (from ``/metrics``)."""
    counts: dict[str, float] = {}
    for service in stack.services:
        if service.kind not in ("model", "auth") or not service.metrics_port:
            continue
        text = httpx.get(f"http://127.0.0.1:{service.metrics_port}/metrics", timeout=10).text
        for labels, value in _HANDLED.findall(text):
            fields = dict(re.findall(r'(\w+)="([^"]*)"', labels))
            name = f"{service.kind}.{fields.get('grpc_method', '?')}"
            counts[name] = counts.get(name, 0.0) + float(value)
    return counts
