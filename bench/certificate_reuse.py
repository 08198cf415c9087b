"""A certificate session's reuse: a read (a last-use write every 5 min at most) vs a write.

Every new API connection (and each identity re-check of an open one) asks
``AuthenticateCertificate``, which reuses the certificate's live session
(``SessionStore.reuse_for_certificate``). That used to be one ``UPDATE``
marking the session used on every call; it is now a ``SELECT`` that also says
whether the recorded last use is recent, and the ``UPDATE`` only when it is
older than ``LAST_USED_GRANULARITY_SECONDS`` (as ``ValidateToken`` does for a
token's session). Starts a throwaway PostgreSQL and an Authenticator in this
process, records one certificate session for each of 50 users, then
alternates rounds of sequential reuse calls between ``after`` (the
Authenticator's own store) and ``before`` (a bench-only store sending the old
statement). Per round: wall p50, this process's CPU per call and the
PostgreSQL backends' CPU per call (``/proc``), and the load average.

    python -m bench.certificate_reuse [--calls 4000] [--rounds 4]
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

from bench._auth_served import DATABASE, run_on_postgres, served_auth
from bench.issue_assertion import _backends, _cpu_seconds
from bugless_auth.sessions import SessionStore
from bugless_core.migrations import quote_schema

#: The statement a reuse sent before (main at 497c5e0): a write on every call.
OLD_REUSE = """
UPDATE sessions SET last_used_at = now()
WHERE session_id = (
    SELECT s.session_id FROM sessions s
    WHERE s.user_id = $1 AND s.certificate = $2 AND s.revoked_at IS NULL
    AND s.expires_at > now()
    AND s.expires_at >= LEAST(now() + $3::float8 * INTERVAL '1 second', $4::timestamptz)
    ORDER BY s.expires_at DESC, s.session_id
    LIMIT 1
) AND revoked_at IS NULL
RETURNING session_id, expires_at
"""
#: A certificate's session is reused while more than this is left (3 h of 12).
MIN_SECONDS_LEFT = 3 * 3600.0


class WriteEachTime(SessionStore):
    """The old reuse: one UPDATE marking the session used, every call (bench only)."""

    async def reuse_for_certificate(
        self,
        user_id: str,
        certificate: str,
        *,
        min_seconds_left: float,
        until: float,
        subject: str | None = None,  # the old statement recorded no mapping entry
    ) -> tuple[str, float] | None:
        until_at = datetime.datetime.fromtimestamp(until, datetime.UTC)
        row = await self._store.run(
            lambda conn: conn.fetchrow(OLD_REUSE, user_id, certificate, min_seconds_left, until_at),
            transaction=False,
        )
        if row is None:
            return None
        return str(row["session_id"]), float(row["expires_at"].timestamp())


async def bench(calls: int, rounds: int, database_url: str, key: Path) -> None:
    async with served_auth(database_url, key) as auth:
        watcher = await asyncpg.connect(
            database_url, server_settings={"search_path": quote_schema(DATABASE)}
        )
        try:
            users = await auth.add_users(50)
            store = auth.service.sessions
            until = time.time() + 30 * 24 * 3600.0  # the certificates' expiry: far off
            certificates = []
            for n, user_id in enumerate(users):
                certificate = f"{n:064x}"
                refused = await store.record(
                    f"bench-session-{n}",
                    user_id=user_id,
                    authenticator="tls",
                    client_address="",
                    expires_at=time.time() + 12 * 3600.0,
                    certificate=certificate,
                    min_seconds_left=MIN_SECONDS_LEFT,
                    certificate_until=until,
                )
                assert refused is None, refused
                certificates.append((user_id, certificate))
            ways = {"after": store, "before": WriteEachTime(auth.service.store)}
            figures: dict[str, list[tuple[float, float, float]]] = {w: [] for w in ways}

            async def one_round(way: str) -> tuple[float, float, float]:
                sessions = ways[way]
                backends = await _backends(watcher)
                pg_before, cpu_before = _cpu_seconds(backends), time.process_time()
                samples = []
                for n in range(calls):
                    user_id, certificate = certificates[n % len(certificates)]
                    started = time.perf_counter()
                    found = await sessions.reuse_for_certificate(
                        user_id, certificate, min_seconds_left=MIN_SECONDS_LEFT, until=until
                    )
                    samples.append(time.perf_counter() - started)
                    assert found is not None
                cpu = (time.process_time() - cpu_before) / calls * 1000
                pg = (_cpu_seconds(backends) - pg_before) / calls * 1000
                return statistics.median(samples) * 1000, cpu, pg

            for way in ways:  # warm both statements and the pool
                await one_round(way)
            print(f"reuse_for_certificate, {calls} sequential calls per round (in process):")
            for number in range(rounds):
                for way in ("before", "after") if number % 2 == 0 else ("after", "before"):
                    p50, cpu, pg = await one_round(way)
                    figures[way].append((p50, cpu, pg))
                    print(
                        f"  round {number + 1} {way:<6} p50 {p50:.3f} ms  CPU ms/call: "
                        f"auth {cpu:.3f} · postgres {pg:.3f}  load {os.getloadavg()[0]:.2f}"
                    )
            print("median of the rounds:")
            for way, rows in figures.items():
                p50, cpu, pg = (statistics.median(r[i] for r in rows) for i in range(3))
                print(
                    f"  {way:<6} p50 {p50:.3f} ms  CPU ms/call: auth {cpu:.3f} · postgres {pg:.3f}"
                )
        finally:
            await watcher.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    run_on_postgres(functools.partial(bench, args.calls, args.rounds))


if __name__ == "__main__":
    main()
