"""What an idle notifier asks of the Model and of its queue database, round by round.

    python -m bench.notify_idle [--subscriptions 2000] [--rounds 20] [--before REF]

Real processes through the stack library: PostgreSQL, the Model, the
Authenticator and one ``bugless notify serve`` (mutual TLS between them),
with ``--subscriptions`` saved-search subscriptions in the Model, every one
already seeded in the notifier's queue (``saved_search_seen``), and no change
made: every consumer round is idle (a ``ReadFeed`` that waits two seconds for
nothing). Counted over the notifier's life, its start and ``--rounds``
rounds (a round is one ``ReadFeed``):

* the Model's calls by method (its ``/metrics``);
* the queue database's reads of ``saved_search_seen`` (scans and rows, from
  ``pg_stat_user_tables``) and the scans of every table of the notifier's
  schema (the delivery worker's polls and the start's checks included).

``--before REF`` measures the notifier of git revision ``REF`` first (its
``bugless_notify`` from ``git archive REF``, as :mod:`bench.notify_latency`
takes it), then this checkout's, on the same services and subscriptions.
The figures are counts, not times: they hold on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import asyncpg

from bench._services import METRICS_ENV, BenchStack, grpc_calls, load_average, notify_source_at
from bugless_core.migrations import quote_schema
from bugless_notify.queue import DeliveryQueue

#: The subscriptions (in the Model's default schema): each owner's own searches, one each.
_SUBSCRIBE = """
WITH made AS (
    INSERT INTO bugless.saved_searches (owner, name, query, created_at, modified_at)
    SELECT 'bench-idle-' || (n % 200), 'idle ' || n, 'is:open p:p' || (n % 5), now(), now()
      FROM generate_series(1, $1) AS n
    RETURNING id, owner
)
INSERT INTO bugless.saved_search_subscriptions (user_id, saved_search_id, created_at)
SELECT owner, id, now() FROM made
"""
_SCANS = """
SELECT relname, coalesce(seq_scan, 0) + coalesce(idx_scan, 0) AS scans,
       coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) AS rows
  FROM pg_stat_user_tables WHERE schemaname = $1
"""


async def _seeded_queue(database_url: str, schema: str) -> None:
    """The notifier's schema, migrated, with every subscription already seeded."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        await DeliveryQueue(schema).migrate(pool)
        await pool.execute(
            f"INSERT INTO {quote_schema(schema)}.saved_search_seen "
            "SELECT s.saved_search_id, s.user_id, ss.query "
            "FROM bugless.saved_search_subscriptions s "
            "JOIN bugless.saved_searches ss ON ss.id = s.saved_search_id "
            "ON CONFLICT DO NOTHING"
        )
    finally:
        await pool.close()


async def _scans(database_url: str, schema: str) -> dict[str, tuple[int, int]]:
    """By table of ``schema``: (scans, rows read) so far."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SELECT pg_stat_force_next_flush()")
        rows = await conn.fetch(_SCANS, schema)
    finally:
        await conn.close()
    return {r["relname"]: (int(r["scans"]), int(r["rows"])) for r in rows}


def _until_feed_reads(bench: BenchStack, count: float) -> None:
    """Until the Model has answered ``count`` ReadFeed calls (polled on a thread)."""
    while grpc_calls(bench.stack).get("model.ReadFeed", 0.0) < count:
        time.sleep(0.1)


async def _variant(bench: BenchStack, label: str, env: dict[str, str], rounds: int) -> None:
    """A notifier's whole life on a seeded queue: its start, then ``rounds`` idle rounds.

    Counted from before it starts to after it stopped: a backend's table
    statistics reach ``pg_stat_user_tables`` up to ten seconds late, and
    when its connection closes. So the start's own calls and statements
    (the feed head read twice, the schema checked) are in the figures too.
    """
    stack = bench.stack
    schema = f"notify_idle_{label}"
    await _seeded_queue(stack.model_database_url, schema)
    calls = await asyncio.to_thread(grpc_calls, stack)
    scans = await _scans(stack.model_database_url, schema)
    args = ["notify", "serve", "--port", "0", *stack.backend_flags(), "--schema", schema]
    began = time.monotonic()
    notifier = stack.start("notify", args, name=f"notify-{label}", env=env)
    try:
        # Two head reads at the start (ensure_cursor, start_at_head_if_restored), one a round.
        until = calls.get("model.ReadFeed", 0.0) + 2 + rounds
        await asyncio.to_thread(_until_feed_reads, bench, until)
    finally:
        stack.stop_service(notifier)
    seconds = time.monotonic() - began
    after = await asyncio.to_thread(grpc_calls, stack)
    scans_after = await _scans(stack.model_database_url, schema)
    made = {
        name.removeprefix("model."): round(count - calls.get(name, 0.0))
        for name, count in after.items()
        if name.startswith("model.") and count > calls.get(name, 0.0)
    }
    zero = (0, 0)
    seen_before, seen_after = scans.get("saved_search_seen", zero), scans_after["saved_search_seen"]
    every = sum(s for s, _ in scans_after.values()) - sum(s for s, _ in scans.values())
    listed = ", ".join(f"{name} {count}" for name, count in sorted(made.items()))
    print(
        f"{label:7} start + {rounds} idle rounds ({seconds:.0f} s)  Model calls: {listed}  "
        f"saved_search_seen: {seen_after[0] - seen_before[0]} scans, "
        f"{seen_after[1] - seen_before[1]} rows  every notifier table: {every} scans  "
        f"load {load_average()}",
        flush=True,
    )


async def _run(args: argparse.Namespace) -> None:
    bench = BenchStack.start(extra_env=METRICS_ENV)
    try:
        conn = await asyncpg.connect(bench.stack.model_database_url)
        try:
            await conn.execute(_SUBSCRIBE, args.subscriptions)
        finally:
            await conn.close()
        with tempfile.TemporaryDirectory(prefix="bench-notify-idle-before-") as before:
            variants: list[tuple[str, dict[str, str]]] = []
            if args.before:
                variants.append(
                    ("before", {"PYTHONPATH": notify_source_at(args.before, Path(before))})
                )
            variants.append(("after", {}))
            print(f"{args.subscriptions} subscriptions, all seeded", flush=True)
            for label, env in variants:
                await _variant(bench, label, env, args.rounds)
    finally:
        bench.stop()


def main() -> None:
    """Parse the flags and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--subscriptions", type=int, default=2000, help="subscriptions listed")
    parser.add_argument("--rounds", type=int, default=20, help="idle rounds counted")
    parser.add_argument(
        "--before", default="", help="git revision whose notifier to measure first (e.g. main)"
    )
    asyncio.run(_run(parser.parse_args()))


if __name__ == "__main__":
    main()
