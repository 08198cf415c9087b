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
  asks for (``bugless_web.searching.read_mask``): no hotlists, star or
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
import functools
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import asyncpg.pool

import bugless_model_postgres.plugin
from bench import _dataset as data
from bench import _seed_sql as seed_sql
from bench._search_floor import (
    CALLER,
    PAGE_SIZE,
    PRINCIPALS,
    FloorSql,
    floor_call,
    ids_first_floor,
    text_floor,
)
from bench._served import ServedModel, postgres_cpu, process_cpu
from bench._web_page import WEB_QUERY, measure_web_page
from bench.seed import connect, model_settings
from bugless_core import limits
from bugless_core.grpc import CorkedChannel, GrpcServerSettings
from bugless_core.issue_fields import OPEN_STATUSES
from bugless_core.list_columns import DEFAULT_COLUMNS
from bugless_core.model.runner import close_model, start_model
from bugless_core.plugins import load_plugins
from bugless_core.search import parse_query, to_structured
from bugless_model_postgres import PostgresBackend, _custom_search, _search, _search_page
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask

#: The open statuses as the database stores them (their enum numbers).
OPEN = sorted(int(s) for s in OPEN_STATUSES)
#: Issue 23's targets, through the Model as deployed (mode ``served``): every
#: query's p95 within this ratio of its floor's with one client...
TARGET_RATIO = 1.5
#: ... and the compound query's p95 within this with 8 clients.
TARGET_P95_MS = 50.0
TARGET_P95_QUERY = "compound"


@dataclass
class BenchQuery:
    """One benchmark query: its text, its request and its floor."""

    name: str
    text: str
    page: int
    floor: FloorSql
    structured: v1.StructuredQuery
    token: str = ""
    position: list[Any] | None = None
    #: The measured page's token from the served Model (its own token secret).
    served_token: str = ""
    #: The measured page's ids and total, as every mode must answer.
    expected: tuple[list[int], int] = ([], 0)


@dataclass(frozen=True)
class Stats:
    """Latency percentiles (ms) and throughput of one run."""

    p50: float
    p95: float
    p99: float
    rps: float
    requests: int


def _stats(samples: list[float], wall: float) -> Stats:
    ordered = sorted(samples)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000

    return Stats(pct(0.50), pct(0.95), pct(0.99), len(samples) / wall, len(samples))


async def measure(
    calls: list[Callable[[], Awaitable[Any]]], per_client: int, warmup: int = 10
) -> Stats:
    """Run ``per_client`` timed calls on each client concurrently."""
    samples: list[float] = []

    async def client(call: Callable[[], Awaitable[Any]]) -> None:
        for _ in range(warmup):
            await call()
        await barrier.wait()
        for _ in range(per_client):
            started = time.perf_counter()
            await call()
            samples.append(time.perf_counter() - started)

    barrier = asyncio.Barrier(len(calls) + 1)
    tasks = [asyncio.create_task(client(c)) for c in calls]
    await barrier.wait()
    started = time.perf_counter()
    await asyncio.gather(*tasks)
    return _stats(samples, time.perf_counter() - started)


async def _pick_word(conn: asyncpg.Connection, issues: int) -> tuple[str, int]:
    """The vocabulary word whose issue count is nearest 1% of ``issues``."""
    best: tuple[float, str, int] | None = None
    for rank in (150, 200, 250, 300, 350, 400, 450, 500, 600, 700):
        word = await conn.fetchval(
            f"SELECT word FROM {seed_sql.BENCH_SCHEMA}.vocabulary WHERE rank = $1", rank
        )
        n = await conn.fetchval(
            "SELECT count(*) FROM issues WHERE text_tsv @@ plainto_tsquery('english', $1)", word
        )
        score = abs(n / issues - 0.01)
        if best is None or score < best[0]:
            best = (score, word, n)
    assert best is not None
    return best[1], best[2]


def _structured(text: str) -> v1.StructuredQuery:
    users = {data.BENCH_ASSIGNEE: data.BENCH_ASSIGNEE}
    return to_structured(parse_query(text), me=CALLER.user_id, users=users, today=data.END.date())


async def build_queries(conn: asyncpg.Connection) -> tuple[list[BenchQuery], dict[str, Any]]:
    """The benchmark queries and what the data says about them."""
    info = {
        r["key"]: json.loads(r["value"])
        for r in await conn.fetch(f"SELECT key, value FROM {seed_sql.BENCH_SCHEMA}.seed_info")
    }
    issues = int(info["issues"])
    subtree = int(info["components"][data.TEN_PERCENT_SUBTREE])
    word, word_issues = await _pick_word(conn, issues)
    subtree_issues = await conn.fetchval(
        "SELECT count(*) FROM issues i JOIN components c ON c.id = i.component_id "
        "WHERE c.path_ids @> ARRAY[$1::bigint]",
        subtree,
    )
    facts = {
        "issues": issues,
        "word": word,
        "word_share": word_issues / issues,
        "subtree_id": subtree,
        "subtree_share": subtree_issues / issues,
    }
    phrase = data.PHRASES[0]
    queries = [
        BenchQuery(
            "compound",
            f"is:open c:{subtree}+ p<=p1 {word}",
            1,
            text_floor(
                # The subtree as a list of component ids, as the Model writes it: a
                # condition on the joined row (``c.path_ids @> ...``) made PostgreSQL
                # loop over the subtree's components, re-reading the word's whole
                # GIN posting list for each (~100 ms a page at 1,000,000 issues).
                "i.status = ANY ({p[0]}::smallint[]) AND i.component_id = ANY (ARRAY("
                "SELECT sc.id FROM components sc WHERE sc.path_ids @> ARRAY[{p[1]}::bigint])) "
                "AND i.priority <= 2 AND i.text_tsv @@ plainto_tsquery('english', {p[2]})",
                [OPEN, subtree, word],
            ),
            _structured(f"is:open c:{subtree}+ p<=p1 {word}"),
        ),
        BenchQuery(
            "assignee",
            f"assignee:{data.BENCH_ASSIGNEE} is:open",
            1,
            ids_first_floor(
                "i.assignee = {p[0]} AND i.status = ANY ({p[1]}::smallint[])",
                "i.id DESC",
                [data.BENCH_ASSIGNEE, OPEN],
            ),
            _structured(f"assignee:{data.BENCH_ASSIGNEE} is:open"),
        ),
        BenchQuery(
            "phrase",
            f'"{phrase}"',
            1,
            text_floor("i.text_tsv @@ phraseto_tsquery('english', {p[0]})", [phrase]),
            _structured(f'"{phrase}"'),
        ),
        BenchQuery(
            "modified-p3",
            "is:open sort:-modified",
            3,
            ids_first_floor(
                "i.status = ANY ({p[0]}::smallint[])",
                "i.modified_at DESC, i.id DESC",
                [OPEN],
                keyset="AND (i.modified_at, i.id) < ({p[2]}::timestamptz, {p[3]}::bigint)",
            ),
            _structured("is:open sort:-modified"),
        ),
    ]
    custom_field = info.get("custom_fields", {}).get(data.TEN_PERCENT_SUBTREE)
    if custom_field is not None:
        custom_text = f'"{data.CUSTOM_FIELD_NAME}":{data.BENCH_CUSTOM_VALUE} is:open c:{subtree}+'
        queries.append(
            BenchQuery(
                "custom",
                custom_text,
                1,
                ids_first_floor(
                    "i.id = ANY (ARRAY(SELECT v.issue_id FROM issue_custom_values v "
                    "WHERE v.field_id = {p[0]}::bigint AND v.value = {p[1]}::text "
                    "AND v.status = ANY ({p[2]}::smallint[]) AND v.component_id = ANY (ARRAY("
                    "SELECT sc.id FROM components sc WHERE sc.path_ids @> ARRAY[{p[3]}::bigint]"
                    ")))) AND i.status = ANY ({p[2]}::smallint[]) "
                    "AND c.path_ids @> ARRAY[{p[3]}::bigint]",
                    "i.id DESC",
                    [custom_field, data.BENCH_CUSTOM_VALUE, OPEN, subtree],
                ),
                _structured(custom_text),
            )
        )
    for q in queries:
        facts[f"{q.name}_matches"] = await conn.fetchval(
            q.floor.count, PRINCIPALS, *q.floor.params, limits.SEARCH_COUNT_CAP + 1
        )
    return queries, facts


async def _floor_call(
    pool: asyncpg.Pool, q: BenchQuery, *, count: bool | None = None
) -> tuple[list[int], int | None]:
    return await floor_call(pool, q.floor, q.position, count=count)


def _grpc_call(
    stub: v1.ModelStub, request: v1.SearchIssuesRequest
) -> Callable[[], Awaitable[v1.SearchIssuesResponse]]:
    return functools.partial(stub.search_issues, request)


def _request(
    q: BenchQuery, read_mask: FieldMask | None = None, *, served: bool = False
) -> v1.SearchIssuesRequest:
    return v1.SearchIssuesRequest(
        caller=CALLER,
        query=q.structured,
        page=v1.PageRequest(page_size=PAGE_SIZE, page_token=q.served_token if served else q.token),
        # Result lists (the web tier, the API's listing clients) ask for summaries.
        summary=True,
        read_mask=read_mask,
    )


def _web_mask() -> FieldMask:
    """The read mask of the web's result table with the default columns."""
    from bugless_web.searching import read_mask  # noqa: PLC0415 - only with --web-mask

    return read_mask(DEFAULT_COLUMNS)


async def _prepare_pages(backend: PostgresBackend, pool: asyncpg.Pool, q: BenchQuery) -> None:
    """Tokens/positions of the measured page; check that every mode agrees."""
    response = await backend.search_issues(_request(q))
    for _ in range(q.page - 1):
        last = response.issues[-1]
        q.position = [last.modified_at, last.id]
        q.token = response.next_page_token
        response = await backend.search_issues(_request(q))
    ids, total = await _floor_call(pool, q, count=True)
    got = [i.id for i in response.issues]
    if ids != got or min(total or 0, limits.SEARCH_COUNT_CAP) != response.total_count:
        msg = f"{q.name}: backend {got[:5]}… total {response.total_count}, SQL {ids[:5]}… {total}"
        raise RuntimeError(msg)
    q.expected = (got, response.total_count)


async def _prepare_served(served: ServedModel, stub: v1.ModelStub, q: BenchQuery) -> None:
    """The served Model's token of the measured page; check it answers as the backend does."""
    response = await served.call(stub, _request(q, served=True))()
    for _ in range(q.page - 1):
        q.served_token = response.next_page_token
        response = await served.call(stub, _request(q, served=True))()
    ids, total = q.expected
    got = [i.id for i in response.issues]
    if ids != got or total != response.total_count:
        msg = f"{q.name}: served Model {got[:5]}… total {response.total_count}, backend {ids[:5]}…"
        raise RuntimeError(msg)


async def explain(conn: asyncpg.pool.PoolConnectionProxy, q: BenchQuery) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the one statement the backend runs for the page."""
    position = None
    if q.position is not None:
        position = [v.isoformat() if isinstance(v, datetime) else v for v in q.position]
    catalog = await _custom_search.load_catalog(conn, q.structured)
    compiled = _search.compile_search(q.structured, CALLER, PRINCIPALS, position, catalog)
    # A later page's token carries the first page's total: that page does not count.
    sql, _ = _search_page.page_statement(compiled, summary=True, counted=position is None)
    args = _search_page.page_arguments(compiled, PAGE_SIZE, limits.SEARCH_COUNT_CAP, CALLER.user_id)
    out = [f"== {q.name}: {q.text}", sql.strip()]
    plan = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *args)
    out += [r[0] for r in plan]
    f = q.floor
    head = [CALLER.user_id, PRINCIPALS, *f.params, PAGE_SIZE + 1]
    tail = [limits.SEARCH_COUNT_CAP + 1] if f.one_pass else (q.position or [])
    out += [f"-- the floor's page: {f.page}"]
    out += [r[0] for r in await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {f.page}", *head, *tail)]
    return "\n".join(out)


Calls = list[Callable[[], Awaitable[Any]]]


@dataclass
class _Targets:
    """What the modes call: the backend, the floor's pool and the two kinds of Model."""

    direct: PostgresBackend
    pool: asyncpg.Pool
    channels: list[Any]
    served: ServedModel | None
    served_channels: list[Any]

    def modes(self, q: BenchQuery, clients: int, *, web_mask: bool) -> dict[str, Calls]:
        """Each mode's calls for ``clients`` clients (one channel each where there are any)."""
        served, modes = self.served, dict[str, Calls]()
        masks: list[tuple[str, FieldMask | None]] = [("", None)]
        masks += [("-web", _web_mask())] if web_mask else []
        for suffix, mask in masks:
            if served is not None:
                request = _request(q, mask, served=True)
                modes["served" + suffix] = [
                    served.call(v1.ModelStub(ch), request) for ch in self.served_channels[:clients]
                ]
            if self.channels:
                request = _request(q, mask)
                modes["grpc" + suffix] = [
                    _grpc_call(v1.ModelStub(ch), request) for ch in self.channels[:clients]
                ]
            if not suffix:
                direct = functools.partial(self.direct.search_issues, _request(q))
                modes["backend"] = [direct] * clients
                modes["sql"] = [functools.partial(_floor_call, self.pool, q)] * clients
        return modes


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
