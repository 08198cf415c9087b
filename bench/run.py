"""Seed and benchmark search in one process, on a throwaway PostgreSQL.

    python -m bench.run --issues 1000000 [--requests 300] [--explain]

Starts a server (``bugless_dev.postgres.start_postgres``), seeds it
(:mod:`bench.seed`, verified against the backend), runs :mod:`bench.search`,
and stops the server, also on Ctrl-C or failure.
"""

from __future__ import annotations

import argparse

from bench.search import run_search
from bench.seed import add_seed_arguments, options_from, seed_and_verify, with_database


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_seed_arguments(parser)
    parser.add_argument("--requests", type=int, default=300, help="timed requests per run")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN (ANALYZE, BUFFERS)")
    args = parser.parse_args()

    async def work(url: str) -> None:
        await seed_and_verify(url, args.schema, options_from(args), check=not args.no_verify)
        await run_search(url, args.schema, args.requests, show_plans=args.explain)

    with_database(None, work, keep=False)


if __name__ == "__main__":
    main()
