"""Sign-in latency through the Authenticator while the LDAP provider hangs (target p99 < 1 s).

    python -m bench.ldap_failover [--signins 500] [--clients 4] [--server-retry-seconds 5]

Starts a throwaway PostgreSQL (the Authenticator's identity store), an LDAP
provider and a syncrepl read replica (two real slapd, as the tests start them:
``bugless_testing.slapd_replica``), and an Authenticator with
the ``ldap`` backend listing the provider first, on a loopback gRPC socket.
Clients in the same process sign in with ``AuthenticatePassword`` (search as
the service account, bind as the user, identity upsert, token), ``--clients``
at a time, in three phases:

1. both servers up;
2. the provider SIGSTOPped at the start of the phase (it accepts connections
   and never answers: the worst case). The sign-ins in flight when it stops,
   and those that start before the backend's timeout tells it so, wait for
   that timeout. The phase lasts until ``--signins`` sign-ins have started
   ``connect_timeout + operation_timeout`` seconds after the stop (by then the
   backend skips the provider); the figures are given for the whole phase and
   for those;
3. the provider continued (SIGCONT), measured once a probe had time to
   find it answering.

Timeouts and ``server_retry_seconds`` are the backend's defaults unless given.
CPU is per sign-in: this process (Authenticator and clients together) and the
two slapd; the load average is the machine's, read before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from grpclib.client import Channel
from prometheus_client import CollectorRegistry

import bugless_auth.plugin
from bugless_auth.ldap import LdapSettings
from bugless_auth.runner import start_auth
from bugless_auth.settings import AuthSettings, ThrottleSettings
from bugless_auth.store import IdentityStore
from bugless_auth.tokens import generate_ed25519_pem
from bugless_core.grpc import GrpcServerSettings
from bugless_core.plugins import load_plugins
from bugless_dev.postgres import start_postgres
from bugless_proto import v1
from bugless_testing.slapd import PEOPLE_DN, READER_DN, READER_PASSWORD, SEED_USERS
from bugless_testing.slapd_replica import ReplicaPair, start_replica_pair

TARGET_P99_SECONDS = 1.0
_DEFAULTS = LdapSettings(urls=("ldap://defaults",), base_dn="dc=defaults")


@dataclass
class Phase:
    """One phase's sign-ins: (start offset, duration) pairs, failures, CPU."""

    label: str
    samples: list[tuple[float, float]] = field(default_factory=list)
    failures: int = 0
    cpu_self: float = 0.0
    cpu_slapd: float = 0.0
    #: CPU of the sign-ins counted from ``count_from`` on (this process, slapd).
    steady_cpu: tuple[float, float] = (0.0, 0.0)


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _slapd_cpu(pair: ReplicaPair) -> float:
    return sum(
        _cpu_seconds(server.process.pid)
        for server in (pair.provider, pair.consumer)
        if server.process is not None
    )


def _quantile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, max(0, round(q * len(sorted_values)) - 1))]


def _line(label: str, durations: list[float], failures: int = 0) -> str:
    if not durations:
        return f"  {label:<34} no sign-ins"
    ms = sorted(d * 1000 for d in durations)
    over = sum(d >= TARGET_P99_SECONDS * 1000 for d in ms)
    return (
        f"  {label:<34} n={len(ms):<4} p50 {statistics.median(ms):7.1f} ms"
        f"  p95 {_quantile(ms, 0.95):7.1f}  p99 {_quantile(ms, 0.99):7.1f}"
        f"  max {ms[-1]:7.1f}  >=1s {over}  failed {failures}"
    )


def report(phase: Phase, *, steady_after: float | None = None) -> None:
    durations = [d for _, d in phase.samples]
    print(_line(phase.label, durations, phase.failures))
    if steady_after is not None:
        steady = [d for start, d in phase.samples if start >= steady_after]
        print(_line(f"  started >= {steady_after:g} s after the stop", steady))
    count = len(phase.samples) + phase.failures
    print(
        f"  {'':<34} CPU per sign-in: this process {phase.cpu_self / count * 1000:.2f} ms, "
        f"slapd {phase.cpu_slapd / count * 1000:.2f} ms"
    )
    if steady_after is not None:
        counted = sum(start >= steady_after for start, _ in phase.samples)
        cpu_self, cpu_slapd = phase.steady_cpu
        print(
            f"  {'':<34} CPU per sign-in after {steady_after:g} s: this process "
            f"{cpu_self / counted * 1000:.2f} ms, slapd {cpu_slapd / counted * 1000:.2f} ms"
        )


async def run_phase(
    label: str,
    stub: v1.AuthenticatorStub,
    pair: ReplicaPair,
    signins: int,
    clients: int,
    *,
    count_from: float = 0.0,
) -> Phase:
    """Sign in, ``clients`` at a time, until ``signins`` have started ``count_from`` s in.

    Sign-ins that start earlier are recorded too (the whole-phase figures).
    """
    phase = Phase(label)
    counted = 0
    cpu_self, cpu_slapd = time.process_time(), _slapd_cpu(pair)
    steady_from: tuple[float, float] | None = None
    started = time.perf_counter()

    async def client(first: int) -> None:
        nonlocal counted, steady_from
        i = first
        while True:
            t0 = time.perf_counter()
            if t0 - started >= count_from:
                if steady_from is None:
                    steady_from = (time.process_time(), _slapd_cpu(pair))
                if counted >= signins:
                    return
                counted += 1
            user = SEED_USERS[i % len(SEED_USERS)]
            i += clients
            request = v1.AuthenticatePasswordRequest(username=user.uid, password=user.password)
            try:
                result = await stub.authenticate_password(request)
            except Exception:  # a failed sign-in is a figure, not a crash
                phase.failures += 1
                continue
            phase.samples.append((t0 - started, time.perf_counter() - t0))
            assert result.token, "a sign-in without a token"

    await asyncio.gather(*(client(n) for n in range(clients)))
    phase.cpu_self = time.process_time() - cpu_self
    phase.cpu_slapd = _slapd_cpu(pair) - cpu_slapd
    if steady_from is not None:
        phase.steady_cpu = (
            time.process_time() - steady_from[0],
            _slapd_cpu(pair) - steady_from[1],
        )
    return phase


async def bench(args: argparse.Namespace, database_url: str, key: Path, pair: ReplicaPair) -> None:
    schema = f"bench_ldap_{secrets.token_hex(3)}"
    await IdentityStore.migrate(database_url, schema)
    options = {
        "urls": ",".join(pair.urls),
        "base_dn": PEOPLE_DN,
        "bind_dn": READER_DN,
        "bind_password": READER_PASSWORD,
        "connect_timeout": str(args.connect_timeout),
        "operation_timeout": str(args.operation_timeout),
        "server_retry_seconds": str(args.server_retry_seconds),
    }
    settings = AuthSettings(
        database_url=database_url,
        schema=schema,
        authenticators=("ldap",),
        authenticator_options={"ldap": options},
        token_keys=(key,),
        throttle=ThrottleSettings(per_user_limit=10**6, per_address_limit=10**6),
    )
    plugins = load_plugins(entry_points=False, extra=[bugless_auth.plugin])
    service, runner = await start_auth(
        plugins,
        settings,
        GrpcServerSettings(insecure_local=True, drain_seconds=0, grace_seconds=1),
        metrics_registry=CollectorRegistry(),
    )
    channel = Channel("127.0.0.1", runner.port)
    stub = v1.AuthenticatorStub(channel)
    load_before = os.getloadavg()
    try:
        await run_phase("warm-up", stub, pair, args.clients * 10, args.clients)
        print(
            f"AuthenticatePassword through gRPC, ldap backend, {args.clients} concurrent clients, "
            f"{args.signins} sign-ins a phase; connect_timeout {args.connect_timeout:g} s, "
            f"operation_timeout {args.operation_timeout:g} s, "
            f"server_retry_seconds {args.server_retry_seconds:g} (target p99 < 1 s)"
        )
        report(await run_phase("both servers up", stub, pair, args.signins, args.clients))

        steady_after = args.connect_timeout + args.operation_timeout
        pair.provider.pause()
        hung = await run_phase(
            "provider SIGSTOPped", stub, pair, args.signins, args.clients, count_from=steady_after
        )
        report(hung, steady_after=steady_after)

        pair.provider.resume()
        # Give the background probe its turn, so this phase shows the provider serving again.
        await asyncio.sleep(args.server_retry_seconds + args.connect_timeout)
        report(
            await run_phase("provider continued (SIGCONT)", stub, pair, args.signins, args.clients)
        )
    finally:
        pair.provider.resume()
        channel.close()
        await runner.close()
        await service.close()
    load_after = os.getloadavg()
    print(
        "  load average (1/5/15 min): before "
        + " ".join(f"{v:.2f}" for v in load_before)
        + ", after "
        + " ".join(f"{v:.2f}" for v in load_after)
        + f" ({os.cpu_count()} CPUs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signins", type=int, default=500, help="timed sign-ins per phase")
    parser.add_argument("--clients", type=int, default=4, help="concurrent sign-ins")
    parser.add_argument("--connect-timeout", type=float, default=_DEFAULTS.connect_timeout)
    parser.add_argument("--operation-timeout", type=float, default=_DEFAULTS.operation_timeout)
    parser.add_argument(
        "--server-retry-seconds", type=float, default=_DEFAULTS.server_retry_seconds
    )
    args = parser.parse_args()
    postgres = start_postgres()
    try:
        with (
            tempfile.TemporaryDirectory() as tmp,
            start_replica_pair(log_operations=False) as pair,
        ):
            key = Path(tmp) / "key.pem"
            key.write_bytes(generate_ed25519_pem())
            url = postgres.create_database(f"bench_ldap_{secrets.token_hex(3)}")
            asyncio.run(bench(args, url, key, pair))
    finally:
        postgres.stop()


if __name__ == "__main__":
    main()
