"""The drill's topology on one machine: PostgreSQL, every tier, HAProxy.

Every hop between services is mutual TLS with the service's own identity
(``spiffe://bugless/<service>`` certificates from :class:`bugless_dev.pki.LocalPki`),
so HAProxy passes TLS through and balances the gRPC tiers per connection.
Services run as ``bugless ... serve`` subprocesses, the way an operator (or a
pod) runs them, started by the one local-stack library
(:class:`bugless_dev.stack.LocalStack`: its environment map, PKI and process
handling), each in a server slot of HAProxy. Frontends reach the Model and the
Authenticator through HAProxy too, so a Model replica can go away under them.
PostgreSQL is the library's throwaway server, paused and resumed for the
database-outage phase.

Every replica binds port 0 and reports the port it got (``--ready-file``);
the slot it takes over is then pointed at that port through HAProxy's runtime
API, as a pod's address becomes a Service endpoint. Only HAProxy's frontends
need ports named ahead (its configuration binds them): a start that loses one
of them to another process on this shared machine is retried on new ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ha_config import Backend, Haproxy, HaproxyLayout, render_config

from bugless_core.clients import ServiceAddress
from bugless_dev.pki import CertificateFiles, LocalPki
from bugless_dev.postgres import ENV_URL, ThrowawayPostgres, start_postgres
from bugless_dev.processes import ServiceFailed, ServiceProcess, check_grpc_health, unused_port
from bugless_dev.stack import LocalStack, StackConfig

#: The tiers in rolling-restart order: backends first, as a rollout of a new
#: version would go (frontends must never be newer than what they call).
TIERS = ("model", "auth", "api", "web")
#: gRPC service whose health says a replica of the tier is ready.
_HEALTH_SERVICE = {"model": "bugless.v1.Model", "auth": "bugless.v1.Authenticator"}
_START_TIMEOUT_SECONDS = 60.0


@dataclass
class Replica:
    """One running ``bugless ... serve`` process in a server slot.

    Attributes:
        tier: ``model``, ``auth``, ``api`` or ``web``.
        slot: Index of its HAProxy server slot.
        port: Where it listens (0 until it has reported the port it bound).
        process: The process (leader of its own process group).
        log: Its output.
    """

    tier: str
    slot: int
    port: int
    process: ServiceProcess

    @property
    def log(self) -> Path:
        """Its output."""
        return self.process.log

    def signal(self, signum: signal.Signals) -> None:
        """Send ``signum`` to the process, if it still runs."""
        self.process.signal(signum)

    async def wait_exit(self, within: float) -> int | None:
        """Wait for the process to exit; its code, or None if it still runs."""
        try:
            return await asyncio.to_thread(self.process.wait, within)
        except subprocess.TimeoutExpired:
            return None


@dataclass
class Tier:
    """The replicas of one tier and the command that starts one.

    Attributes:
        name: The tier.
        backend: Its HAProxy backend (one slot more than replicas).
        command: ``bugless`` arguments of a replica listening on a port (the
            drill passes 0: the replica binds any and reports it).
        replicas: Running replicas by slot.
    """

    name: str
    backend: Backend
    command: Callable[[int], list[str]]
    replicas: dict[int, Replica] = field(default_factory=dict)

    def free_slot(self) -> int:
        """The first slot no replica occupies."""
        for slot in range(self.backend.slots):
            if slot not in self.replicas:
                return slot
        msg = f"every {self.name} slot is taken"
        raise RuntimeError(msg)

    def oldest(self) -> Replica:
        """The replica started first (what a rollout replaces next)."""
        return min(self.replicas.values(), key=lambda r: r.process.pid)


async def grpc_health(
    port: int, service: str, *, probe: CertificateFiles | None, ca: Path | None, within: float = 1.0
) -> str | None:
    """The ``grpc.health.v1`` status name of ``service`` on a loopback port, or None.

    With ``probe`` (a client certificate) and ``ca``, over mutual TLS, as every
    bugless service but the web requires; without, in plaintext (which a
    service on mutual TLS refuses: None).
    """
    if probe is None:
        address = ServiceAddress("127.0.0.1", port)
    else:
        address = ServiceAddress("127.0.0.1", port, ca=ca, cert=probe.cert, key=probe.key)
    return await check_grpc_health(address, service, within_seconds=within)


@contextlib.contextmanager
def _own_postgres() -> Iterator[None]:
    """Make :func:`start_postgres` start a server even if a test URL is set.

    The drill stops and starts PostgreSQL, which it can only do to a server
    it started.
    """
    saved = os.environ.pop(ENV_URL, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[ENV_URL] = saved


@dataclass
class Topology:
    """Everything the drill started; :meth:`stop` ends all of it.

    Attributes:
        directory: Logs, certificates, the HAProxy configuration.
        postgres: The PostgreSQL server (this process started it: it can be paused).
        stack: The environment, PKI and process handling of every service.
        layout: HAProxy's ports, slots and check settings.
        haproxy: The running HAProxy.
        tiers: The tiers by name.
        bots: Client certificates of the load generator's bots.
        admin_bot: A bot in the admins group (creates the drill's component).
        web_user: Username and password of the web load's person.
        probe: The client certificate health checks present (HAProxy's too).
    """

    directory: Path
    postgres: ThrowawayPostgres
    stack: LocalStack
    layout: HaproxyLayout
    haproxy: Haproxy
    tiers: dict[str, Tier]
    bots: list[CertificateFiles]
    admin_bot: CertificateFiles
    web_user: tuple[str, str]
    probe: CertificateFiles

    async def health(self, port: int, service: str, *, within: float = 1.0) -> str | None:
        """``service``'s health on a replica's port, asked over mutual TLS."""
        return await grpc_health(
            port, service, probe=self.probe, ca=self.pki.ca_file, within=within
        )

    @property
    def pki(self) -> LocalPki:
        """The CA, server certificate and the tls authenticator's mapping."""
        return self.stack.pki

    @property
    def model_database_url(self) -> str:
        """The Model's database."""
        return self.stack.model_database_url

    @property
    def api_address(self) -> str:
        """The API as bots see it: HAProxy's API frontend."""
        return f"127.0.0.1:{self.layout.api_port}"

    @property
    def web_url(self) -> str | None:
        """The web UI as browsers see it, or None without the web tier."""
        port = self.layout.web_port
        return None if port is None else f"http://127.0.0.1:{port}"

    def spawn(self, tier: Tier, slot: int) -> Replica:
        """Start a replica of ``tier`` in ``slot`` on port 0; it is not ready yet."""
        process = self.stack.spawn(
            tier.name, tier.command(0), name=f"{tier.name}{slot + 1}-{time.monotonic_ns()}"
        )
        replica = Replica(tier=tier.name, slot=slot, port=0, process=process)
        tier.replicas[slot] = replica
        return replica

    async def start_replica(self, tier: Tier, slot: int) -> Replica:
        """Start a replica in ``slot`` and return once HAProxy routes to it.

        Raises:
            RuntimeError: It exited, or HAProxy never saw it UP.
        """
        replica = self.spawn(tier, slot)
        await self.wait_in_rotation(replica)
        return replica

    async def wait_in_rotation(self, replica: Replica) -> None:
        """Point ``replica``'s slot at its port; wait until HAProxy sees it UP."""
        tier = self.tiers[replica.tier]
        server = tier.backend.server(replica.slot)
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        if not replica.port:
            try:
                ready = await asyncio.to_thread(
                    replica.process.wait_ready_file, _START_TIMEOUT_SECONDS
                )
            except ServiceFailed as exc:
                raise RuntimeError(f"{server}: {exc}") from exc
            replica.port = ready.port
            await self.haproxy.set_server_port(tier.name, server, ready.port)
        while True:
            if replica.process.exited:
                msg = (
                    f"{server} exited with {replica.process.returncode} before serving:\n"
                    + replica.log.read_text(errors="replace")[-3000:]
                )
                raise RuntimeError(msg)
            if (await self.haproxy.servers_up(tier.name)).get(server):
                return
            if time.monotonic() > deadline:
                msg = f"HAProxy never saw {server} UP:\n" + replica.log.read_text(errors="replace")
                raise RuntimeError(msg[-3000:])
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """Stop every replica (fast: a second SIGTERM skips the drain), HAProxy, PostgreSQL."""
        replicas = [r for tier in self.tiers.values() for r in tier.replicas.values()]
        for replica in replicas:
            replica.signal(signal.SIGTERM)
        await asyncio.sleep(0.2)
        for replica in replicas:
            replica.signal(signal.SIGTERM)
        for replica in replicas:
            if await replica.wait_exit(10) is None:
                replica.signal(signal.SIGKILL)
                await replica.wait_exit(5)
        for tier in self.tiers.values():
            tier.replicas.clear()
        self.haproxy.stop()
        await asyncio.to_thread(self.postgres.stop)


@dataclass(frozen=True)
class TopologySettings:
    """How the topology is shaped.

    Attributes:
        directory: Where logs and files go (created).
        replicas: Replicas per tier (the Authenticator runs one, as asked of
            the drill; the others two).
        with_web: Whether to run the web tier.
        bots: Number of bot identities for the API load.
        drain_seconds: ``--drain-seconds`` of every service: NOT_SERVING (or a
            failing /readyz) this long before it stops accepting. Must exceed
            HAProxy's detection time (``fall`` x check interval).
        grace_seconds: ``--grace-seconds``: then in-flight work may finish.
    """

    directory: Path
    replicas: dict[str, int] = field(
        default_factory=lambda: {"model": 2, "auth": 1, "api": 2, "web": 2}
    )
    with_web: bool = True
    bots: int = 4
    drain_seconds: float = 3.0
    grace_seconds: float = 10.0


def _write_haproxy_pem(directory: Path, files: CertificateFiles) -> Path:
    combined = directory / "haproxy-probe.pem"
    combined.write_text(files.cert.read_text() + files.key.read_text())
    combined.chmod(0o600)
    return combined


async def start_topology(settings: TopologySettings) -> Topology:
    """Start PostgreSQL, migrate, start every replica and HAProxy; wait until all serve.

    On failure everything already started is stopped before the error propagates.
    """
    directory = settings.directory
    directory.mkdir(parents=True, exist_ok=True)
    with _own_postgres():
        postgres = await asyncio.to_thread(start_postgres)
    try:
        if not postgres.local:
            msg = "the drill needs a PostgreSQL it started itself, not an external one"
            raise RuntimeError(msg)
        return await _start_services(settings, postgres)
    except BaseException:
        await asyncio.to_thread(postgres.stop)
        raise


#: How many sets of frontend ports HAProxy is started on before giving up.
_HAPROXY_ATTEMPTS = 5


async def _start_haproxy(
    settings: TopologySettings, backends: dict[str, Backend], probe: Path, ca_file: Path
) -> tuple[HaproxyLayout, Haproxy]:
    """Start HAProxy on frontend ports free a moment ago; new ones if it lost a race.

    HAProxy cannot bind port 0 and report it, so its frontends' ports are
    named in its configuration; on this shared machine another process can
    take one between choosing and binding it, and then HAProxy exits at
    start. Nothing has been told these ports yet, so new ones are as good.

    Raises:
        RuntimeError: It did not start on any of :data:`_HAPROXY_ATTEMPTS` sets.
    """
    directory = settings.directory
    failures: list[str] = []
    for _ in range(_HAPROXY_ATTEMPTS):
        layout = HaproxyLayout(
            model_port=unused_port(),
            auth_port=unused_port(),
            api_port=unused_port(),
            web_port=unused_port() if settings.with_web else None,
            backends=backends,
            admin_socket=directory / "haproxy.sock",
            probe_pem=probe,
            ca_file=ca_file,
        )
        config = directory / "haproxy.cfg"
        config.write_text(render_config(layout))
        layout.admin_socket.unlink(missing_ok=True)
        haproxy = Haproxy(config, layout.admin_socket, directory / "haproxy.log")
        try:
            await asyncio.to_thread(haproxy.start)
        except RuntimeError as exc:
            haproxy.stop()
            if "did not start" not in str(exc):
                raise  # not installed, or the configuration is wrong: no retry helps
            failures.append(str(exc)[-500:])
            continue
        return layout, haproxy
    msg = f"HAProxy did not start on {_HAPROXY_ATTEMPTS} sets of ports:\n" + "\n".join(failures)
    raise RuntimeError(msg)


async def _start_services(settings: TopologySettings, postgres: ThrowawayPostgres) -> Topology:
    directory = settings.directory
    stack = LocalStack(
        StackConfig(
            directory=directory,
            pki=LocalPki.open(directory / "pki"),
            model_database_url=await postgres.acreate_database("drill_model"),
            auth_database_url=await postgres.acreate_database("drill_auth"),
            drain_seconds=settings.drain_seconds,
            grace_seconds=settings.grace_seconds,
            # Mutual TLS on every hop, with each service's own identity
            # (the stack's default): HAProxy passes TLS through.
        )
    )
    pki = stack.pki
    bots = [stack.add_bot(f"drill-bot-{i}") for i in range(settings.bots)]
    admin_bot = stack.add_bot("drill-admin", admin=True)
    probe_files = pki.issue_client_certificate("haproxy-probe")
    probe = _write_haproxy_pem(directory, probe_files)

    tier_names = [t for t in TIERS if t != "web" or settings.with_web]
    backends = {name: Backend(name, settings.replicas[name] + 1) for name in tier_names}
    layout, haproxy = await _start_haproxy(settings, backends, probe, pki.ca_file)
    # Frontends reach the backends through HAProxy; the web replicas share the
    # stack's one cookie key, so a session survives a change of replica.
    # Every Model replica fetches the assertion keys through HAProxy too, so
    # losing one Authenticator replica costs it nothing.
    stack.env["BUGLESS_MODEL_AUTH"] = f"127.0.0.1:{layout.auth_port}"
    backends_flags = ["--model", f"127.0.0.1:{layout.model_port}"]
    backends_flags += ["--auth", f"127.0.0.1:{layout.auth_port}"]
    web_flags = ["--dev", "--steer-to", f"http://127.0.0.1:{layout.web_port}", *backends_flags]
    api_flags = [*backends_flags, *stack.api_tls_flags()]
    commands: dict[str, Callable[[int], list[str]]] = {
        "model": lambda port: ["model", "serve", "--port", str(port)],
        "auth": lambda port: ["auth", "serve", "--port", str(port)],
        "api": lambda port: ["api", "serve", "--port", str(port), *api_flags],
        "web": lambda port: ["web", "serve", "--port", str(port), *web_flags],
    }
    tiers = {name: Tier(name, backends[name], commands[name]) for name in tier_names}
    web_user = ("drill-web", secrets.token_urlsafe(12))
    topology = Topology(
        directory=directory,
        postgres=postgres,
        stack=stack,
        layout=layout,
        haproxy=haproxy,
        tiers=tiers,
        bots=bots,
        admin_bot=admin_bot,
        web_user=web_user,
        probe=probe_files,
    )
    try:
        await asyncio.to_thread(stack.migrate)
        await asyncio.to_thread(stack.add_user, web_user[0], web_user[1])
        # Backends first, then the frontends that call them through HAProxy.
        for wave in (("model", "auth"), ("api", "web")):
            started = [
                topology.spawn(tiers[name], slot)
                for name in wave
                if name in tiers
                for slot in range(settings.replicas[name])
            ]
            await asyncio.gather(*(topology.wait_in_rotation(r) for r in started))
    except BaseException:
        await topology.stop()
        raise
    return topology
