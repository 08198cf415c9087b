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
import datetime
import functools
import os
import statistics
import time
from pathlib import Path

import asyncpg

from bench._auth_served import DATABASE, ServedAuth, run_on_postgres, served_auth
from bugless_auth.sessions import NotRecorded, SessionStore
from bugless_core.migrations import quote_schema
from bugless_proto import v1

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
        certificate: str | None = None,  # the old statement had no such columns,
        min_seconds_left: float = 0.0,  # nor a session per certificate to keep to
        certificate_until: float | None = None,
        subject: str | None = None,  # nor the mapping entry that admitted it
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
    async with served_auth(database_url, key) as auth:
        watcher = await asyncpg.connect(
            database_url, server_settings={"search_path": quote_schema(DATABASE)}
        )
        try:
            await _rounds(auth, watcher, calls, rounds)
        finally:
            await watcher.close()


async def _rounds(auth: ServedAuth, watcher: asyncpg.Connection, calls: int, rounds: int) -> None:
    """Warm both ways, then time ``rounds`` rounds of each, alternating which goes first."""
    service = auth.service
    ways = {"after": service.sessions, "before": UnconditionedSessions(service.store)}
    figures: dict[str, list[tuple[float, float, float, float]]] = {w: [] for w in ways}
    users = await auth.add_users(50)
    stub = v1.AuthenticatorStub(auth.channel)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    run_on_postgres(functools.partial(bench, args.calls, args.rounds))


if __name__ == "__main__":
    main()
