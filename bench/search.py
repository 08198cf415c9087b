"""Search latency on a seeded database: Model gRPC vs backend vs hand-written SQL.

Queries (written in the search language, parsed with ``parse_query`` and
translated with ``to_structured`` as a frontend would):

* ``compound``: ``is:open c:<Infra>+ p<=p1 <word>`` -- a subtree holding ~10%
  of issues and a word occurring in ~1% of issues (picked by counting);
* ``assignee``: ``assignee:user0010 is:open``;
* ``phrase``: ``"connection reset by peer"`` (full-text phrase);
* ``modified-p3``: ``is:open sort:-modified``, page 3 (the page token of
  page 2 is fetched once and reused);
* ``named``: ``compound`` with the subtree named, ``component:Infra+``: the
  Model looks the name up (``component:Name``, through migration 0032's
  index) and checks it on the first page;
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

``--before [LABEL=]PATH`` (repeatable) adds mode ``served@LABEL``: a Model
running an older checkout's code (``PATH``: its ``packages/*/src``, as a
``PYTHONPATH``) on ``--before-database-url LABEL=URL``, a database its own
``bench.seed`` seeded alike (a Model serves only the schema version its code
ships), its PostgreSQL sessions counted with the others; ``--repeat N`` runs
each query's modes N times, in the reverse order every other time, so old
and new code take the machine's load alike. A query an older Model refuses
or answers otherwise is not measured on it.

CPU milliseconds per request are printed for each process: the bench
process (the clients; in modes ``grpc``/``backend`` also the Model's work),
the Model processes (mode ``served``), PostgreSQL (every backend serving the
database), all from ``/proc``.

Every mode must return the same ids and total, or the run stops.

    python -m bench.search --database-url URL [--requests 300] [--explain] [--served N]
        [--before [LABEL=]PATH ...] [--repeat N]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import time

import asyncpg

import bugless_model_postgres.plugin
from bench._search_floor import CALLER
from bench._search_modes import (
    Stats,
    _prepare_pages,
    _prepare_served,
    _Targets,
    before_answers_alike,
    explain,
    measure,
)
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
    befores: dict[str, tuple[str, str]] | None = None,
    repeat: int = 1,
) -> list[tuple[str, str, int, Stats]]:
    """Benchmark every query (or those named in ``only``) in every mode; print the figures.

    ``served_processes`` Model processes serve mode ``served`` (0: no such
    mode); ``in_process`` adds mode ``grpc`` (the Model inside this process).
    ``befores`` (label: an older checkout's ``packages/*/src`` and its
    database, "" for this one) adds mode ``served@LABEL`` per label, that
    code's Model on that database (seeded alike; PostgreSQL's CPU counts
    every database's sessions);
    ``repeat`` runs every query's modes that many times, in the reverse
    order every other time, so old and new take the machine's load alike.
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
    databases = [url.rpartition("/")[2] for _, url in (befores or {}).values() if url]
    served = None
    if served_processes:
        served = await ServedModel.start(
            database_url,
            CALLER,
            processes=served_processes,
            env={"BUGLESS_DATABASE_SCHEMA": schema},
            befores=befores,
        )
    # As the frontends reach the Model: the corked transport and the upb codec
    # (grpclib's own Channel would decode with betterproto2's pure Python).
    targets = _Targets(
        direct,
        pool,
        [CorkedChannel("127.0.0.1", started[1].port) for _ in range(8)] if started else [],
        served,
        served.channels(8) if served is not None else [],
        {label: served.channels(8, label) for label in served.befores} if served else {},
    )
    results: list[tuple[str, str, int, Stats]] = []
    try:
        for q in queries:
            await _prepare_pages(direct, pool, q)
            if served is not None:
                await _prepare_served(served, v1.ModelStub(targets.served_channels[0]), q)
                for label, channels in targets.before_channels.items():
                    if await before_answers_alike(served, v1.ModelStub(channels[0]), q, label):
                        targets.before_queries.setdefault(label, set()).add(q.name)
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
            for clients, round_ in itertools.product(client_counts, range(repeat)):
                per_client = max(requests // clients, 20)
                modes = list(targets.modes(q, clients, web_mask=web_mask).items())
                for mode, calls in modes[:: -1 if round_ % 2 else 1]:
                    model_pids = targets.model_pids(mode)
                    own, server = time.process_time(), await postgres_cpu(meter, databases)
                    model = sum(process_cpu(pid) for pid in model_pids)
                    stats = await measure(calls, per_client)
                    own = time.process_time() - own
                    model = sum(process_cpu(pid) for pid in model_pids) - model
                    after = await postgres_cpu(meter, databases)
                    database = sum(cpu - server.get(pid, 0.0) for pid, cpu in after.items())
                    done = per_client * clients + 10 * clients
                    results.append((q.name, mode, clients, stats))
                    shown = f"{model * 1000 / done:.2f}" if model_pids else "-"
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
        befores_channels = [ch for chs in targets.before_channels.values() for ch in chs]
        for ch in [*targets.channels, *targets.served_channels, *befores_channels]:
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


def _labelled(given: str) -> tuple[str, str]:
    """``LABEL=VALUE`` as (label, value); a bare value is labelled ``before``."""
    label, _, value = given.partition("=")
    return (label, value) if value else ("before", given)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True, help="a database seeded by bench.seed")
    parser.add_argument("--schema", default="bugless")
    parser.add_argument("--requests", type=int, default=300, help="timed requests per run")
    parser.add_argument(
        "--explain",
        action="store_true",
        help="print EXPLAIN (ANALYZE, BUFFERS) of each page's statement as the Model runs it: "
        "its custom plan, its generic plan and which of the two 10 prepared runs used",
    )
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
    parser.add_argument(
        "--before",
        action="append",
        default=[],
        metavar="[LABEL=]PATH",
        help="also mode served@LABEL (default label: before): a Model running an older "
        "checkout's code, PATH its packages/*/src as a PYTHONPATH (repeatable)",
    )
    parser.add_argument(
        "--before-database-url",
        action="append",
        default=[],
        metavar="[LABEL=]URL",
        help="the database of --before's LABEL (default: --database-url); an older "
        "schema version needs its own, seeded by that checkout's bench.seed",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs of each query's modes, in the reverse order every other run",
    )
    args = parser.parse_args()
    urls = dict(_labelled(given) for given in args.before_database_url)
    befores = {label: (path, urls.get(label, "")) for label, path in map(_labelled, args.before)}
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
            befores=befores,
            repeat=args.repeat,
        )
    )


if __name__ == "__main__":
    main()
