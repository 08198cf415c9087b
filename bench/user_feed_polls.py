"""What frontends following an idle users' change feed cost the Authenticator's database.

Every frontend process (each API process, each web worker) polls
``GetUserChanges`` every ``--user-changes-seconds`` (1 s). This starts a
throwaway PostgreSQL, the stack's Authenticator (this checkout) and a second
one on the same database with ``--before``'s environment (``PYTHONPATH`` of an
older checkout's packages runs its code), then, in turn, points ``--followers``
real frontend caches (:class:`bugless_core.user_cache.UserCache`, polling
every second over mutual TLS as the API) at each, and counts the database's
transactions (``pg_stat_database``: every statement the Authenticator runs
outside a transaction is one) per second over ``--seconds``. ``idle``: no
follower, the two Authenticators' own followers and pruning only. Nobody
changes a user meanwhile: the common case.

    python -m bench.user_feed_polls --before PYTHONPATH=<old>/packages/bugless-auth/src:... \
        [--followers 4] [--seconds 30] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import time

import asyncpg

from bench._services import BenchStack, load_average
from bugless_core.clients import ServiceAddress
from bugless_core.user_cache import UserCache, get_user_changes, get_users
from bugless_proto import v1

#: Seconds a round waits before counting: PostgreSQL publishes a backend's
#: counts when it goes idle, at the latest 10 s later (PGSTAT_IDLE_INTERVAL).
SETTLE_SECONDS = 11.0
#: How often the frontends poll (the default --user-changes-seconds).
POLL_SECONDS = 1.0


async def transactions(database_url: str) -> int:
    """The database's committed and rolled-back transactions so far."""
    conn = await asyncpg.connect(database_url)
    try:
        value: int = await conn.fetchval(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database"
            " WHERE datname = current_database()"
        )
    finally:
        await conn.close()
    return value


async def statements_per_second(
    database_url: str, address: ServiceAddress | None, followers: int, seconds: float
) -> float:
    """Transactions per second while ``followers`` caches poll ``address`` (None: nobody)."""
    channels = [address.channel() for _ in range(followers)] if address is not None else []
    caches = [
        UserCache(
            ttl_seconds=30.0,
            changes=get_user_changes(v1.AuthenticatorStub(channel), timeout=5.0),
            poll_seconds=POLL_SECONDS,
        )
        for channel in channels
    ]
    try:
        for cache, channel in zip(caches, channels, strict=True):
            await cache.by_id([], get_users(v1.AuthenticatorStub(channel)))  # starts following
        await asyncio.sleep(SETTLE_SECONDS)
        first, began = await transactions(database_url), time.monotonic()
        await asyncio.sleep(seconds)
        last, ended = await transactions(database_url), time.monotonic()
    finally:
        for cache in caches:
            cache.close()
        for channel in channels:
            channel.close()
    return (last - first - 1) / (ended - began)  # less this function's own first read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--before", required=True, help="NAME=VALUE words for the old code")
    parser.add_argument("--followers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    env = dict(word.split("=", 1) for word in args.before.split())
    bench = BenchStack.start()
    try:
        stack = bench.stack
        api = stack.identities["api"]
        after = next(s for s in stack.services if s.kind == "auth")
        before = stack.start("auth", ["auth", "serve", "--port", "0"], name="auth-before", env=env)
        targets = {"after": after, "before": before}
        addresses = {
            label: dataclasses.replace(service.address, cert=api.cert, key=api.key)
            for label, service in targets.items()
            if service.address is not None
        }
        print(f"{args.followers} followers polling every {POLL_SECONDS:g} s, {args.seconds:g} s")
        for round_number in range(1, args.rounds + 1):
            for label, address in [("idle", None), *addresses.items()]:
                rate = asyncio.run(
                    statements_per_second(
                        stack.auth_database_url, address, args.followers, args.seconds
                    )
                )
                print(
                    f"  round {round_number} {label:<7} {rate:6.2f} statements/s"
                    f"   load {load_average()}"
                )
    finally:
        bench.stop()


if __name__ == "__main__":
    main()
