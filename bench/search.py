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

* ``grpc``: the Model service started in-process by ``start_model`` on a
  loopback port, called through ``v1.ModelStub`` on the frontends' channel
  (``CorkedChannel``: the corked transport and the upb codec; one channel per
  client; clients share the server's process and event loop), asking for
  summary pages as the web tier does;
* ``backend``: ``PostgresBackend.search_issues`` called directly (no gRPC);
* ``sql``: the floor -- hand-written SQL through asyncpg giving the same
  answer as the summary page (:mod:`bench._search_floor`): the page's ids,
  then every column and per-row flag the response carries joined back; then
  the capped count on a first page (a later page's token carries the first
  page's total, so neither the Model nor the floor counts there); a text
  query's page and count from one read of its matches;
* ``grpc-web`` (with ``--web-mask``): as ``grpc``, with the read mask the
  web's result table of the default columns asks for
  (``bugless_web.searching.read_mask``): no hotlists, star or relation lists,
  so fewer columns than the floor reads.

Every mode must return the same ids and total, or the run stops.

    python -m bench.search --database-url URL [--requests 300] [--explain]
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
#: Queries held to the p95 target through gRPC (issue 18 adds the custom-field one).
TARGET_QUERIES = ("compound", "custom")
#: Target of the issue: compound p95 through gRPC, and its ratio to the floor.
TARGET_P95_MS = 50.0
TARGET_RATIO = 1.5


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


def _request(q: BenchQuery, read_mask: FieldMask | None = None) -> v1.SearchIssuesRequest:
    return v1.SearchIssuesRequest(
        caller=CALLER,
        query=q.structured,
        page=v1.PageRequest(page_size=PAGE_SIZE, page_token=q.token),
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
) -> list[tuple[str, str, int, Stats]]:
    """Benchmark every query (or those named in ``only``) in every mode; print the figures."""
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
    plugins = load_plugins(entry_points=False, extra=[bugless_model_postgres.plugin])
    backend, runner = await start_model(
        plugins,
        PostgresBackend,
        settings,
        GrpcServerSettings(insecure_local=True, drain_seconds=0, grace_seconds=1),
    )
    pool = await asyncpg.create_pool(
        database_url,
        min_size=8,
        max_size=10,
        server_settings={"search_path": f'"{schema}", public'},
    )
    direct = await PostgresBackend.open(settings)
    meter = await connect(settings)
    # As the frontends reach the Model: the corked transport and the upb codec
    # (grpclib's own Channel would decode with betterproto2's pure Python).
    channels = [CorkedChannel("127.0.0.1", runner.port) for _ in range(8)]
    results: list[tuple[str, str, int, Stats]] = []
    try:
        for q in queries:
            await _prepare_pages(direct, pool, q)
        if show_plans:
            async with pool.acquire() as plan_conn:
                for q in queries:
                    print(await explain(plan_conn, q), flush=True)
        print(
            f"\n{'query':<12} {'mode':<8} {'clients':>7} {'p50 ms':>8} {'p95 ms':>8} "
            f"{'p99 ms':>8} {'req/s':>8}  CPU ms/req: bench process (client + Model) · "
            "postgres; load"
        )
        for q in queries:
            request = _request(q)
            for clients in client_counts:
                per_client = max(requests // clients, 20)
                modes: dict[str, list[Callable[[], Awaitable[Any]]]] = {
                    "grpc": [_grpc_call(v1.ModelStub(ch), request) for ch in channels[:clients]],
                    "backend": [functools.partial(direct.search_issues, request)] * clients,
                    "sql": [functools.partial(_floor_call, pool, q)] * clients,
                }
                if web_mask:
                    masked = _request(q, _web_mask())
                    modes["grpc-web"] = [
                        _grpc_call(v1.ModelStub(ch), masked) for ch in channels[:clients]
                    ]
                for mode, calls in modes.items():
                    own, server = time.process_time(), await _postgres_cpu(meter)
                    stats = await measure(calls, per_client)
                    own = time.process_time() - own
                    after = await _postgres_cpu(meter)
                    served = sum(cpu - server.get(pid, 0.0) for pid, cpu in after.items())
                    done = per_client * clients + 10 * clients
                    results.append((q.name, mode, clients, stats))
                    print(
                        f"{q.name:<12} {mode:<8} {clients:>7} {stats.p50:>8.2f} "
                        f"{stats.p95:>8.2f} {stats.p99:>8.2f} {stats.rps:>8.1f}  "
                        f"{own * 1000 / done:.2f} · {served * 1000 / done:.2f}; "
                        f"{os.getloadavg()[0]:.1f}",
                        flush=True,
                    )
        _print_ratios(results)
        if web_pages:
            await measure_web_page(v1.ModelStub(channels[0]), web_pages)
    finally:
        for ch in channels:
            ch.close()
        await direct.close()
        await meter.close()
        await pool.close()
        await runner.close()
        await close_model(backend)
    return results


#: The web tier's list page (``/search?q=is:open``) asks the Model for these:
#: the page of summaries, the custom fields of each of the page's first 20
#: components (``bugless_web.custom_fields.fields_of_components``; cached
#: per component since web23, so this is a cache miss) and the viewer's
#: hotlists for the bulk-edit menu (cached per viewer for 5 s).
WEB_QUERY = "is:open"
WEB_FIELD_COMPONENTS = 20
WEB_MENU_HOTLISTS = 200


async def web_page_calls(stub: v1.ModelStub, search: v1.SearchIssuesRequest) -> dict[str, float]:
    """The Model calls of one uncached web list page; CPU seconds (this process) per part."""
    spent: dict[str, float] = {}
    started = time.process_time()
    page = await stub.search_issues(search)
    spent["search"] = time.process_time() - started
    components = sorted({i.component_id for i in page.issues} - {0})[:WEB_FIELD_COMPONENTS]
    started = time.process_time()
    await asyncio.gather(
        *(
            stub.list_custom_fields(v1.ListCustomFieldsRequest(caller=CALLER, component_id=c))
            for c in components
        )
    )
    spent[f"custom fields x{len(components)}"] = time.process_time() - started
    started = time.process_time()
    await stub.list_hotlists(
        v1.ListHotlistsRequest(
            caller=CALLER,
            member=CALLER.user_id,
            page=v1.PageRequest(page_size=WEB_MENU_HOTLISTS),
        )
    )
    spent["hotlists"] = time.process_time() - started
    return spent


async def measure_web_page(stub: v1.ModelStub, pages: int) -> None:
    """Print the CPU ms (client and in-process Model) of each part of an uncached web page."""
    request = v1.SearchIssuesRequest(
        caller=CALLER,
        query=_structured(WEB_QUERY),
        page=v1.PageRequest(page_size=PAGE_SIZE),
        summary=True,
    )
    for _ in range(5):
        await web_page_calls(stub, request)
    totals: dict[str, float] = {}
    started = time.perf_counter()
    for _ in range(pages):
        for part, cpu in (await web_page_calls(stub, request)).items():
            totals[part] = totals.get(part, 0.0) + cpu
    wall = time.perf_counter() - started
    parts = " · ".join(f"{part} {cpu * 1000 / pages:.2f}" for part, cpu in totals.items())
    print(
        f"\nweb list page {WEB_QUERY!r} through gRPC, {pages} pages one after another: "
        f"CPU ms/page (client + Model) {sum(totals.values()) * 1000 / pages:.2f} ({parts}); "
        f"{wall * 1000 / pages:.2f} ms/page; load {os.getloadavg()[0]:.1f}",
        flush=True,
    )


_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


async def _postgres_cpu(conn: asyncpg.Connection) -> dict[int, float]:
    """CPU seconds of each server process serving this database (but ``conn``'s own)."""
    pids = await conn.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid()"
    )
    return {r["pid"]: _proc_cpu(r["pid"]) for r in pids}


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
        if name in TARGET_QUERIES and mode == "grpc":
            ok = stats.p95 <= TARGET_P95_MS and stats.p95 / floor.p95 <= TARGET_RATIO
            verdict = (
                f"   target p95 <= {TARGET_P95_MS:.0f} ms and <= {TARGET_RATIO}x floor: "
                f"{'met' if ok else 'MISSED'}"
            )
        print(
            f"  {name:<12} {mode:<8} {clients} client(s): "
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
        )
    )


if __name__ == "__main__":
    main()
