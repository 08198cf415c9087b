"""The mention backfill of ``bugless model migrate``: seconds per 1,000 queued issues.

    python -m bench.mention_backfill [--issues 20000] [--rounds 3] [--every 10]

Seeds a throwaway PostgreSQL (:mod:`bench.seed`), writes ``@userNNNN`` into
about every ``--every``-th comment (the seed writes none), then each round
drops every stored mention, queues every issue (``issue_mentions_pending``,
as a migration that changes the mention rule does) and times ``migrate``
with no file pending: what an upgrade's backfill costs, in batches of
``BACKFILL_BATCH`` issues, each one transaction. The stored mentions (count
and digest) are checked equal to the first run's after every round. Printed:
seconds, issues/s and ms per 1,000 issues, min and median of the rounds,
with the load average.
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench._services import load_average
from bench.seed import SeedOptions, connect, model_settings, seed_and_verify, with_database
from bugless_model_postgres import PostgresBackend

_MENTION = """
UPDATE issue_history
   SET comment = comment || ' cc @user' || lpad(((issue_id + version) % 500)::text, 4, '0')
 WHERE comment <> '' AND (issue_id + version) % $1 = 0
"""
_REQUEUE = """
DELETE FROM issue_mentions;
INSERT INTO issue_mentions_pending (issue_id) SELECT id FROM issues ON CONFLICT DO NOTHING;
"""
_STORED = """
SELECT count(*)::text || ' ' || coalesce(sum(hashtext(issue_id || username)), 0)
  FROM issue_mentions
"""


async def _run(url: str, args: argparse.Namespace) -> None:
    await seed_and_verify(url, "bugless", SeedOptions(issues=args.issues), check=False)
    settings = model_settings(url)
    conn = await connect(settings)
    try:
        print(f"mentions written into {await conn.execute(_MENTION, args.every)}", flush=True)
        await conn.execute(_REQUEUE)
        await PostgresBackend.migrate(settings)
        expected: str = await conn.fetchval(_STORED)
        print(f"stored mentions (count, digest): {expected}", flush=True)
        seconds: list[float] = []
        for _ in range(args.rounds):
            await conn.execute(_REQUEUE)
            started = time.perf_counter()
            await PostgresBackend.migrate(settings)
            seconds.append(time.perf_counter() - started)
            found: str = await conn.fetchval(_STORED)
            if found != expected:
                raise RuntimeError(f"the backfill stored {found}, the first run {expected}")
    finally:
        await conn.close()
    print("| issues | round | seconds | issues/s | ms per 1,000 issues | load |")
    print("|---|---|---|---|---|---|")
    for name, value in [("min", min(seconds)), ("median", statistics.median(seconds))]:
        print(
            f"| {args.issues:,} | {name} | {value:.2f} | {args.issues / value:,.0f} | "
            f"{value * 1e6 / args.issues:.0f} | {load_average()} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--issues", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--every", type=int, default=10, help="a mention in every N-th comment")
    parser.add_argument("--database-url", help="an existing (empty) database; default: throwaway")
    args = parser.parse_args()

    async def work(url: str) -> None:
        await _run(url, args)

    with_database(args.database_url, work, keep=False)


if __name__ == "__main__":
    main()
