"""Search latency on a seeded database: Model gRPC vs backend vs hand-written SQL.

Queries (written in the search language, parsed with ``parse_query`` and
translated with ``to_structured`` as a frontend would):

* ``compound``: ``is:open c:<Infra>+ p<=p1 <word>`` -- a subtree holding ~10%
  of issues and a word occurring in ~1% of issues (picked by counting);
* ``assignee``: ``assignee:user0010 is:open``;
* ``phrase``: ``"connection reset by peer"`` (full-text phrase);
* ``modified-p3``: ``is:open sort:-modified``, page 3 (the page token of
  page 2 is fetched once and reused);
* ``custom``: ``"Found In":4.2 is:open c:<Infra>+`` -- one custom-field term
  by name (custom values on 20% of issues, this one on ~2%; the name means
  the field of every top-level component, so the Model looks up seven field
  ids in the value rows of Model migration 0010), the open statuses and the
  10% subtree; the floor names the one field that applies there.

Each runs 50 issues a page, as ``user0042`` (group ``eng``, so three
restricted subtrees are invisible), in three ways, with 1 and 8 concurrent
clients:

* ``served``: the Model as deployed (:mod:`bench._served`): ``bugless model
  serve`` subprocesses (``--served N`` of them sharing a port, default 1)
  reached over mutual TLS with the web tier's certificate and an identity
  assertion, through ``v1.ModelStub`` on the frontends' channel
  (``CorkedChannel``: the corked transport and the upb codec; one channel per
  client), asking for summary pages as the web tier does; the bench process
  holds only the clients;
* ``grpc``: the same calls to a Model service started inside the bench
  process by ``start_model`` (plaintext loopback, no assertion): clients and
  Model share one process, event loop and core, so with 8 clients every
  page waits for the others' Python (``--no-in-process`` leaves it out);
* ``backend``: ``PostgresBackend.search_issues`` called directly (no gRPC);
* ``sql``: the floor -- hand-written SQL through asyncpg giving the same
  answer as the summary page (:mod:`bench._search_floor`): the page's ids,
  then every column and per-row flag the response carries joined back; then
  the capped count on a first page (a later page's token carries the first
  page's total, so neither the Model nor the floor counts there); a text
  query's page and count from one read of its matches;
* ``served-web``, ``grpc-web`` (with ``--web-mask``): as ``served`` and
  ``grpc``, with the read mask the web's result table of the default columns
  asks for (``bugless_web.result_columns.read_mask``): no hotlists, star or
  relation lists, so fewer columns than the floor reads.

CPU milliseconds per request are printed for each process: the bench
process (the clients; in modes ``grpc``/``backend`` also the Model's work),
the Model processes (mode ``served``), PostgreSQL (every backend serving the
database), all from ``/proc``.

Every mode must return the same ids and total, or the run stops.

    python -m bench.search --database-url URL [--requests 300] [--explain] [--served N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import asyncpg

import bugless_model_postgres.plugin
from bench._search_floor import CALLER
from bench._search_modes import Stats, _prepare_pages, _prepare_served, _Targets, explain, measure
from bench._search_queries import _structured, build_queries
from bench._served import ServedModel, postgres_cpu, process_cpu
from bench._web_page import WEB_QUERY, measure_web_page
from bench.seed import connect, model_settings
from bugless_core.grpc import CorkedChannel, GrpcServerSettings
from bugless_core.model.runner import close_model, start_model
from bugless_core.plugins import load_plugins
from bugless_model_postgres import PostgresBackend
from bugless_proto import v1

#: Issue 23's targets, through the Model as deployed (mode ``served``): every
#: query's p95 within this ratio of its floor's with one client...
TARGET_RATIO = 1.5
#: ... and the compound query's p95 within this with 8 clients.
TARGET_P95_MS = 50.0
TARGET_P95_QUERY = "compound"


async def run_search(
    database_url: str,
    schema: str = "bugless",
    requests: int = 300,
    *,
    show_plans: bool = False,
    only: tuple[str, ...] = (),
    client_counts: tuple[int, ...] = (1, 8),
    web_pages: int = 0,
    web_mask: bool = False,
    served_processes: int = 1,
    in_process: bool = True,
) -> list[tuple[str, str, int, Stats]]:
    """Benchmark every query (or those named in ``only``) in every mode; print the figures.

    ``served_processes`` Model processes serve mode ``served`` (0: no such
    mode); ``in_process`` adds mode ``grpc`` (the Model inside this process).
    """
    settings = model_settings(database_url, schema, pool=10)
    conn = await connect(settings)
    try:
        queries, facts = await build_queries(conn)
    finally:
        await conn.close()
    if only:
        queries = [q for q in queries if q.name in only]
    print(
        f"{facts['issues']:,} issues; word {facts['word']!r} in {facts['word_share']:.2%}; "
        f"subtree {facts['subtree_id']} holds {facts['subtree_share']:.2%}",
        flush=True,
    )
    for q in queries:
        print(
            f"  {q.name:<12} {q.text!r}: {facts[q.name + '_matches']} visible matches (cap 10001)"
        )
    # Only mode ``grpc`` (and the web page's figures, which use its channel)
    # needs a Model inside this process.
    started = (
        await start_model(
            load_plugins(entry_points=False, extra=[bugless_model_postgres.plugin]),
            PostgresBackend,
            settings,
            GrpcServerSettings(insecure_local=True, drain_seconds=0, grace_seconds=1),
        )
        if in_process
        else None
    )
    pool = await asyncpg.create_pool(
        database_url,
        min_size=8,
        max_size=10,
        server_settings={"search_path": f'"{schema}", public'},
    )
    direct = await PostgresBackend.open(settings)
    meter = await connect(settings)
    served = None
    if served_processes:
        served = await ServedModel.start(
            database_url,
            CALLER,
            processes=served_processes,
            env={"BUGLESS_DATABASE_SCHEMA": schema},
        )
    # As the frontends reach the Model: the corked transport and the upb codec
    # (grpclib's own Channel would decode with betterproto2's pure Python).
    targets = _Targets(
        direct,
        pool,
        [CorkedChannel("127.0.0.1", started[1].port) for _ in range(8)] if started else [],
        served,
        served.channels(8) if served is not None else [],
    )
    model_pids = served.pids if served is not None else []
    results: list[tuple[str, str, int, Stats]] = []
    try:
        for q in queries:
            await _prepare_pages(direct, pool, q)
            if served is not None:
                await _prepare_served(served, v1.ModelStub(targets.served_channels[0]), q)
        if show_plans:
            async with pool.acquire() as plan_conn:
                for q in queries:
                    print(await explain(plan_conn, q), flush=True)
        print(
            f"\n{'query':<12} {'mode':<10} {'clients':>7} {'p50 ms':>8} {'p95 ms':>8} "
            f"{'p99 ms':>8} {'req/s':>8}  CPU ms/req: bench process · Model processes · "
            "postgres; load"
        )
        for q in queries:
            for clients in client_counts:
                per_client = max(requests // clients, 20)
                for mode, calls in targets.modes(q, clients, web_mask=web_mask).items():
                    own, server = time.process_time(), await postgres_cpu(meter)
                    model = sum(process_cpu(pid) for pid in model_pids)
                    stats = await measure(calls, per_client)
                    own = time.process_time() - own
                    model = sum(process_cpu(pid) for pid in model_pids) - model
                    after = await postgres_cpu(meter)
                    database = sum(cpu - server.get(pid, 0.0) for pid, cpu in after.items())
                    done = per_client * clients + 10 * clients
                    results.append((q.name, mode, clients, stats))
                    shown = f"{model * 1000 / done:.2f}" if mode.startswith("served") else "-"
                    print(
                        f"{q.name:<12} {mode:<10} {clients:>7} {stats.p50:>8.2f} "
                        f"{stats.p95:>8.2f} {stats.p99:>8.2f} {stats.rps:>8.1f}  "
                        f"{own * 1000 / done:.2f} · {shown} · {database * 1000 / done:.2f}; "
                        f"{os.getloadavg()[0]:.1f}",
                        flush=True,
                    )
        _print_ratios(results)
        if web_pages and targets.channels:
            await measure_web_page(
                v1.ModelStub(targets.channels[0]), _structured(WEB_QUERY), web_pages
            )
    finally:
        for ch in [*targets.channels, *targets.served_channels]:
            ch.close()
        if served is not None:
            await served.stop()
        await direct.close()
        await meter.close()
        await pool.close()
        if started is not None:
            await started[1].close()
            await close_model(started[0])
    return results


def _print_ratios(results: list[tuple[str, str, int, Stats]]) -> None:
    by_key = {(name, mode, clients): s for name, mode, clients, s in results}
    print("\nratio to the SQL floor (p50 / p95):")
    for name, mode, clients, stats in results:
        if mode == "sql":
            continue
        floor = by_key.get((name, "sql", clients))
        if floor is None:
            continue
        verdict = ""
        if mode == "served" and clients == 1:
            ok = stats.p95 / floor.p95 <= TARGET_RATIO
            verdict = f"   target p95 <= {TARGET_RATIO}x floor: {'met' if ok else 'MISSED'}"
        elif mode == "served" and clients == 8 and name == TARGET_P95_QUERY:
            ok = stats.p95 <= TARGET_P95_MS
            verdict = f"   target p95 <= {TARGET_P95_MS:.0f} ms: {'met' if ok else 'MISSED'}"
        print(
            f"  {name:<12} {mode:<10} {clients} client(s): "
            f"{stats.p50 / floor.p50:.2f}x / {stats.p95 / floor.p95:.2f}x{verdict}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True, help="a database seeded by bench.seed")
    parser.add_argument("--schema", default="bugless")
    parser.add_argument("--requests", type=int, default=300, help="timed requests per run")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN (ANALYZE, BUFFERS)")
    parser.add_argument(
        "--only", action="append", default=[], help="measure only this query (repeatable)"
    )
    parser.add_argument(
        "--clients", default="1,8", help="concurrent clients per run, comma-separated"
    )
    parser.add_argument(
        "--web-page",
        type=int,
        default=0,
        metavar="N",
        help="also time the Model calls of N uncached web list pages (is:open)",
    )
    parser.add_argument(
        "--served",
        type=int,
        default=1,
        metavar="N",
        help="Model processes (bugless model serve, one port) of mode served; 0: no such mode",
    )
    parser.add_argument(
        "--in-process",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also mode grpc: the Model inside the bench process",
    )
    parser.add_argument(
        "--web-mask",
        action="store_true",
        help="also time gRPC with the read mask of the web's default result table (grpc-web)",
    )
    args = parser.parse_args()
    asyncio.run(
        run_search(
            args.database_url,
            args.schema,
            args.requests,
            show_plans=args.explain,
            only=tuple(args.only),
            client_counts=tuple(int(n) for n in args.clients.split(",")),
            web_pages=args.web_page,
            web_mask=args.web_mask,
            served_processes=args.served,
            in_process=args.in_process,
        )
    )


if __name__ == "__main__":
    main()
