"""IssueAssertion latency: the session's insert conditioned on the user's row, against the old one.

An assertion's session used to be one ``INSERT ... VALUES``, decided on the
replica's cached record; it is now an insert that reads the user's row
``FOR SHARE`` and writes nothing for a disabled user (``bugless_auth.sessions``).
Starts a throwaway PostgreSQL and one Authenticator on a loopback socket,
then alternates rounds of sequential ``IssueAssertion`` calls (grpclib client
in the same process) between the two ways of recording the session: ``after``
is the Authenticator's own :class:`~bugless_auth.sessions.SessionStore`,
``before`` a bench-only one sending the old statement. Per round: wall p50 and
p99, this process's CPU per call (server and client) and the PostgreSQL
backends' CPU per call (``/proc``), and the load average.

    python -m bench.issue_assertion [--calls 2000] [--rounds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import statistics
import tempfile
import time
from pathlib import Path

import asyncpg
from grpclib.client import Channel
from prometheus_client import CollectorRegistry

import bugless_auth.plugin
from bugless_auth.runner import start_auth
from bugless_auth.sessions import NotRecorded, SessionStore
from bugless_auth.settings import AuthSettings, PasswordHashing
from bugless_auth.store import IdentityStore
from bugless_auth.tokens import generate_ed25519_pem
from bugless_auth.user_admin import create_local_user
from bugless_core.grpc import GrpcServerSettings
from bugless_core.migrations import quote_schema
from bugless_core.plugins import load_plugins
from bugless_dev.postgres import start_postgres
from bugless_proto import v1

SCHEMA = "bench_auth"
#: The statement sessions were recorded with before (main at 5165945).
OLD_INSERT = """
INSERT INTO sessions (session_id, user_id, authenticator, client_address, expires_at)
VALUES ($1, $2, $3, $4, $5)
"""
TICKS = os.sysconf("SC_CLK_TCK")


class UnconditionedSessions(SessionStore):
    """The old recording: one INSERT, whatever the user's row says (bench only)."""

    async def record(
        self,
        session_id: str,
        *,
        user_id: str,
        authenticator: str,
        client_address: str,
        expires_at: float,
    ) -> NotRecorded | None:
        expires = datetime.datetime.fromtimestamp(expires_at, datetime.UTC)
        await self._store.run(
            lambda conn: conn.execute(
                OLD_INSERT, session_id, user_id, authenticator, client_address[:256], expires
            ),
            transaction=False,
        )
        return None


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


async def _backends(watcher: asyncpg.Connection) -> list[int]:
    rows = await watcher.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid()"
    )
    return [int(row["pid"]) for row in rows]


async def bench(calls: int, rounds: int, database_url: str, key: Path) -> None:
    await IdentityStore.migrate(database_url, SCHEMA)
    settings = AuthSettings(
        database_url=database_url,
        schema=SCHEMA,
        token_keys=(key,),
        hashing=PasswordHashing(time_cost=1, memory_kib=1024, parallelism=1),
        cache_ttl_seconds=3600,
    )
    plugins = load_plugins(entry_points=False, extra=[bugless_auth.plugin])
    service, runner = await start_auth(
        plugins,
        settings,
        GrpcServerSettings(insecure_local=True, drain_seconds=0, grace_seconds=1),
        metrics_registry=CollectorRegistry(),
    )
    channel = Channel("127.0.0.1", runner.port)
    watcher = await asyncpg.connect(
        database_url, server_settings={"search_path": quote_schema(SCHEMA)}
    )
    ways = {"after": service.sessions, "before": UnconditionedSessions(service.store)}
    figures: dict[str, list[tuple[float, float, float, float]]] = {w: [] for w in ways}
    try:
        users = []
        for i in range(50):
            record = await create_local_user(
                service.store,
                service.hashes,
                username=f"user{i}",
                display_name=f"User {i}",
                email=f"user{i}@example.org",
                password="bench-password",
                groups=["eng"],
                min_password_length=1,
            )
            users.append(record.user_id)
        stub = v1.AuthenticatorStub(channel)
        requests = [v1.IssueAssertionRequest(user_id=u) for u in users]
        for sessions in ways.values():  # warm both statements, the cache and the pool
            service.sessions = sessions
            for n in range(300):
                await stub.issue_assertion(requests[n % len(requests)])
        print(f"IssueAssertion, {calls} sequential calls per round over gRPC (loopback):")
        for number in range(rounds):
            for way in ("before", "after") if number % 2 == 0 else ("after", "before"):
                service.sessions = ways[way]
                backends = await _backends(watcher)
                pg_before, cpu_before = _cpu_seconds(backends), time.process_time()
                samples = []
                for n in range(calls):
                    started = time.perf_counter()
                    await stub.issue_assertion(requests[n % len(requests)])
                    samples.append(time.perf_counter() - started)
                cpu = (time.process_time() - cpu_before) / calls * 1000
                pg = (_cpu_seconds(backends) - pg_before) / calls * 1000
                samples.sort()
                p50 = statistics.median(samples) * 1000
                p99 = samples[int(len(samples) * 0.99) - 1] * 1000
                figures[way].append((p50, p99, cpu, pg))
                load = os.getloadavg()[0]
                print(
                    f"  round {number + 1} {way:<6} p50 {p50:.3f} ms  p99 {p99:.3f} ms  "
                    f"CPU ms/call: auth+client {cpu:.3f} · postgres {pg:.3f}  load {load:.2f}"
                )
        print("median of the rounds:")
        for way, rows in figures.items():
            p50, p99, cpu, pg = (statistics.median(r[i] for r in rows) for i in range(4))
            print(
                f"  {way:<6} p50 {p50:.3f} ms  p99 {p99:.3f} ms  "
                f"CPU ms/call: auth+client {cpu:.3f} · postgres {pg:.3f}"
            )
    finally:
        await watcher.close()
        channel.close()
        await runner.close()
        await service.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    server = start_postgres()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            key = Path(tmp) / "key.pem"
            key.write_bytes(generate_ed25519_pem())
            url = server.create_database("bench_auth")
            asyncio.run(bench(args.calls, args.rounds, url, key))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
