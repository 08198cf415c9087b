"""What an idle notifier's round costs in CPU, by the number of saved-search subscriptions.

    python -m bench.notify_idle_cpu [--subscriptions 0,100,1000] [--seconds 30] [--before REF]

:mod:`bench.notify_idle` counts what an idle round asks of the Model and the
queue (calls, scans, rows: counts, which hold on a shared machine); this
gives the CPU those cost each process, per round.

Real processes through the stack library: PostgreSQL, the Model, the
Authenticator and one ``bugless notify serve`` (mutual TLS between them), no
change made while measuring. A round of the feed consumer that finds nothing
to do still prepares the saved-search subscriptions (9b01ff4b listed every
subscription from the Model, pages of 500, and read the notifier's whole
``saved_search_seen``; b0dddf07 asks one small call), then waits up to two
seconds on ReadFeed. This bench gives that idle round's CPU per process, so
a change to it can be compared side by side.

For each count N, N saved searches (spread over ``--users`` users, each the
subscriber of their own) are subscribed to, a notifier is started on a fresh
queue schema and waited for until every subscription is seeded, then the
CPU of each process (notifier, Model, Authenticator, PostgreSQL; from
``/proc``) is read over ``--seconds`` of idleness and divided by the rounds
made in it, counted as the Model's ReadFeed calls (its ``/metrics``; a
round is one ReadFeed that waits two seconds for nothing).

``--before REF`` measures the notifier of git revision ``REF`` too (its
``bugless_notify`` from ``git archive REF`` first on the notifier's
``PYTHONPATH``, as :mod:`bench.notify_latency` does), alternated with this
checkout's at each count, on the same services and subscriptions (a notifier
before 9b01ff4b, which seeds only inside a batch, is measured as it is).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
import time
from pathlib import Path

import asyncpg

from bench._services import (
    METRICS_ENV,
    BenchStack,
    CpuMeter,
    grpc_calls,
    load_average,
    notify_source_at,
)
from bugless_dev.stack import RunningService
from bugless_proto import v1

#: Processes whose CPU an idle round costs, in the order printed.
PROCESSES = ("notify", "model", "auth", "postgres")


async def _subscribe(
    model: v1.ModelStub, users: list[str], start: int, count: int, tag: str
) -> None:
    """``count`` more saved searches, numbered from ``start``, each subscribed by its owner."""
    limit = asyncio.Semaphore(16)

    async def one(n: int) -> None:
        caller = v1.Caller(user_id=users[n % len(users)])
        async with limit:
            saved = await model.create_saved_search(
                v1.CreateSavedSearchRequest(
                    caller=caller, name=f"idle {tag} {n}", query=f"is:open p<=p{n % 4} -idle{n}"
                )
            )
            await model.set_saved_search_subscription(
                v1.SetSavedSearchSubscriptionRequest(
                    caller=caller, saved_search_id=saved.id, subscribed=True
                )
            )

    await asyncio.gather(*(one(n) for n in range(start, start + count)))


async def _rounds(bench: BenchStack) -> int:
    """ReadFeed calls the Model has answered so far: one per consumer round."""
    calls = await asyncio.to_thread(grpc_calls, bench.stack)
    return int(calls.get("model.ReadFeed", 0.0))


#: Seconds without a new seed after which a notifier is taken not to seed while idle.
STALLED_SECONDS = 20


async def _settled(conn: asyncpg.Connection, schema: str, count: int) -> None:
    """Wait until ``count`` subscriptions are seeded in ``schema``, or seeding stops.

    A notifier before 9b01ff4b seeds only inside a batch (or keeps no
    ``saved_search_seen``): it is measured idle as it is.
    """
    seen, moved = -1, time.monotonic()
    while time.monotonic() - moved < STALLED_SECONDS:
        try:
            now = await conn.fetchval(f'SELECT count(*) FROM "{schema}".saved_search_seen')
        except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
            now = -1  # not migrated yet, or a notifier that keeps none
        if now >= count:
            return
        if now != seen:
            seen, moved = now, time.monotonic()
        await asyncio.sleep(0.5)
    print(f"  {schema}: {max(seen, 0)} of {count} seeded while idle; measured so", flush=True)


async def _measure(
    bench: BenchStack,
    conn: asyncpg.Connection,
    variant: tuple[str, dict[str, str]],
    subscriptions: int,
    seconds: float,
) -> None:
    """One notifier's idle rounds with ``subscriptions`` subscribed; prints a row.

    ``variant``: the notifier's label and the environment it runs with.
    """
    label, env = variant
    stack = bench.stack
    schema = f"idle_{secrets.token_hex(3)}"
    args = ["notify", "serve", "--port", "0", *stack.backend_flags(), "--schema", schema]
    args += ["--smtp-host", "127.0.0.1", "--smtp-port", "9", "--smtp-security", "none"]
    notifier: RunningService = stack.start("notify", args, name=f"notify-{schema}", env=env)
    try:
        await _settled(conn, schema, subscriptions)
        await asyncio.sleep(4)  # the seeding round's commit and a first idle round
        pids = await asyncio.to_thread(bench.service_pids)
        pids = {k: v for k, v in pids.items() if not k.startswith("notify")}
        meter = CpuMeter({**pids, "notify": notifier.process.pid})
        first = await _rounds(bench)
        meter.start()
        await asyncio.sleep(seconds)
        used = meter.stop()
        rounds = await _rounds(bench) - first
        load = load_average()
    finally:
        stack.stop_service(notifier)
    per_second = " · ".join(f"{used.get(p, 0.0) * 1000 / seconds:.2f}" for p in PROCESSES)
    per_round = (
        " · ".join(f"{used.get(p, 0.0) * 1000 / rounds:.2f}" for p in PROCESSES) if rounds else "-"
    )
    print(
        f"{label:<8} {subscriptions:>6}  rounds {rounds:>3}  CPU ms/round: {per_round}  "
        f"CPU ms/s: {per_second}  load {load}",
        flush=True,
    )


async def _run(args: argparse.Namespace) -> None:
    counts = [int(n) for n in args.subscriptions.split(",")]
    bench = BenchStack.start(extra_env=METRICS_ENV)
    channel = None
    conn = None
    try:
        stack = bench.stack
        tag = secrets.token_hex(3)
        users = [
            stack.add_user(f"idle{tag}u{n}", "pw-" + tag * 3, email=f"idle{tag}u{n}@bench.test")[
                "user_id"
            ]
            for n in range(args.users)
        ]
        channel = stack.client_address("model", identity="web").channel()
        model = stack.acting_model(v1.ModelStub(channel))
        conn = await asyncpg.connect(stack.config.model_database_url)
        with tempfile.TemporaryDirectory(prefix="bench-notify-idle-") as before:
            variants: list[tuple[str, dict[str, str]]] = [("after", {})]
            if args.before:
                variants.append(
                    ("before", {"PYTHONPATH": notify_source_at(args.before, Path(before))})
                )
            print(
                f"{'notifier':<8} {'subs':>6}  rounds  CPU ms/round and ms/s: "
                f"{' · '.join(PROCESSES)}",
                flush=True,
            )
            made = 0
            for n, count in enumerate(counts):
                await _subscribe(model, users, made, count - made, tag)
                made = max(made, count)
                for variant in variants[:: -1 if n % 2 else 1]:
                    await _measure(bench, conn, variant, count, args.seconds)
    finally:
        if conn is not None:
            await conn.close()
        if channel is not None:
            channel.close()
        bench.stop()


def main() -> None:
    """Parse the flags and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--subscriptions",
        default="0,100,1000",
        help="subscription counts, comma-separated, ascending (each adds to the last)",
    )
    parser.add_argument("--seconds", type=float, default=30, help="idle seconds measured")
    parser.add_argument("--users", type=int, default=20, help="users owning the subscriptions")
    parser.add_argument(
        "--before", default="", help="git revision whose notifier to measure too (e.g. main)"
    )
    asyncio.run(_run(parser.parse_args()))


if __name__ == "__main__":
    main()
