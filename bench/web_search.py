"""The web search page on a seeded database: p50/p95/p99 of whole HTML pages, one client.

    python -m bench.web_search --database-url URL [--requests 200] [--only compound]

Issue 23's target: the search page at 1,000,000 issues, HTML rendered, one
client, **p95 <= 50 ms**. The database is one :mod:`bench.seed` made (the
same data :mod:`bench.search` measures through the Model); on its server a
fresh database is made for the Authenticator, which gets the seeded people
(:func:`bench._services.add_directory_users`). Then the Model, the
Authenticator and ``bugless web serve`` run as subprocesses
(:class:`bugless_dev.stack.LocalStack`, as deployed: mutual TLS between
them), the bench signs in as ``user0042`` (group ``eng``, the caller of
:mod:`bench.search`) and asks for ``/search?q=<query>`` for each of
:mod:`bench.search`'s queries, one request at a time on one keep-alive
connection; ``modified-p3`` is the third page, reached by following the
page's own "Next" links once. Every page must answer 200 with as many rows
as the Model finds (at most 50).

Each row prints the percentiles, pages/s, the CPU milliseconds per page each
process spent (web, Model, Authenticator, PostgreSQL; from /proc), the
1-minute load average and the backend calls one page made (their
``/metrics``). Every process started here is stopped at the end; the
Authenticator's database is dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import re
import tempfile
import time
from pathlib import Path

import httpx

from bench import _dataset as data
from bench._search_queries import BenchQuery, build_queries
from bench._served import drop_database, fresh_database, seeded_stack
from bench._services import (
    METRICS_ENV,
    CpuMeter,
    _postmaster_pid,
    add_directory_users,
    grpc_calls,
    load_average,
)
from bench.seed import connect, model_settings
from bench.web import _sign_in, calls_per_page

#: The target of issue 23 for this page.
TARGET_P95_MS = 50.0
#: Rows on a search page (the web tier's default page size).
PAGE_SIZE = 50
_ROW = re.compile(r'class="open-link">(\d+)<')
_NEXT = re.compile(r'<a rel="next" class="button" href="([^"]+)"')


def _percentile(ordered: list[float], p: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000


async def _queries(database_url: str, schema: str) -> tuple[list[BenchQuery], dict[str, object]]:
    conn = await connect(model_settings(database_url, schema, pool=1))
    try:
        return await build_queries(conn)
    finally:
        await conn.close()


def _page_path(client: httpx.Client, query: BenchQuery) -> str:
    """The URL of the query's page (following "Next" for later pages)."""
    path = "/search?" + str(httpx.QueryParams({"q": query.text}))
    for _ in range(query.page - 1):
        reply = client.get(path)
        found = _NEXT.search(reply.text)
        if reply.status_code != 200 or found is None:
            raise RuntimeError(f"{query.name}: no next page after {path}")
        path = html.unescape(found.group(1))
    return path


def measure(
    client: httpx.Client, path: str, expected_rows: int, requests: int, warmup: int
) -> list[float]:
    """Seconds per page for ``requests`` sequential loads (after ``warmup``); checks each."""
    samples: list[float] = []
    for n in range(warmup + requests):
        started = time.perf_counter()
        reply = client.get(path)
        body = reply.text
        took = time.perf_counter() - started
        if reply.status_code != 200:
            raise RuntimeError(f"{path}: {reply.status_code} {body[:300]}")
        rows = len(_ROW.findall(body))
        if rows != expected_rows:
            raise RuntimeError(f"{path}: {rows} rows, expected {expected_rows}")
        if n >= warmup:
            samples.append(took)
    return samples


def run(database_url: str, schema: str, requests: int, warmup: int, only: tuple[str, ...]) -> None:
    """Start the services on the seeded database, measure every query's page, stop."""
    queries, facts = asyncio.run(_queries(database_url, schema))
    if only:
        queries = [q for q in queries if q.name in only]
    print(f"{facts['issues']:,} issues; queries (visible matches, cap 10001):", flush=True)
    for q in queries:
        print(f"  {q.name:<12} {q.text!r}: {facts[q.name + '_matches']}", flush=True)
    auth_name = f"web_search_auth_{int(time.time())}"
    auth_url = asyncio.run(fresh_database(database_url, auth_name))
    temporary = tempfile.TemporaryDirectory(prefix="bugless-web-search-")
    directory = Path(temporary.name)
    stack = seeded_stack(directory, database_url, auth_url, METRICS_ENV)
    try:
        stack.migrate()
        stack.start_backends()
        asyncio.run(add_directory_users(stack, data.USERS))
        web = stack.start_web("--grace-seconds", "1")
        assert web.url is not None
        cookie = _sign_in(web.url)
        pids = {s.name: s.process.pid for s in stack.services}
        pids["postgres"] = _postmaster_pid(database_url)
        print(
            f"\n{'query':<12} {'page':>4} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
            f"{'pages/s':>8} {'load':>5}  CPU ms/page by process",
            flush=True,
        )
        verdicts: list[str] = []
        with httpx.Client(base_url=web.url, headers={"Cookie": cookie}, timeout=60) as client:
            for q in queries:
                path = _page_path(client, q)
                matches = int(str(facts[q.name + "_matches"]))
                expected = max(0, min(PAGE_SIZE, matches - PAGE_SIZE * (q.page - 1)))
                meter = CpuMeter(pids)
                calls = grpc_calls(stack)
                meter.start()
                started = time.perf_counter()
                samples = measure(client, path, expected, requests, warmup)
                wall = time.perf_counter() - started
                cpu = meter.stop()
                asked = calls_per_page(calls, grpc_calls(stack), requests + warmup)
                ordered = sorted(samples)
                p95 = _percentile(ordered, 0.95)
                per_page = "  ".join(
                    f"{name} {seconds * 1000 / (requests + warmup):.2f}"
                    for name, seconds in cpu.items()
                )
                print(
                    f"{q.name:<12} {q.page:>4} {_percentile(ordered, 0.5):>8.1f} {p95:>8.1f} "
                    f"{_percentile(ordered, 0.99):>8.1f} {(requests + warmup) / wall:>8.1f} "
                    f"{load_average():>5}  {per_page}\n{'':<14}{asked}",
                    flush=True,
                )
                met = "met" if p95 <= TARGET_P95_MS else "MISSED"
                verdicts.append(f"  {q.name:<12} p95 {p95:.1f} ms: {met}")
        print(f"\ntarget: search page p95 <= {TARGET_P95_MS:.0f} ms with one client")
        print("\n".join(verdicts))
    finally:
        stack.stop()
        temporary.cleanup()
        asyncio.run(drop_database(database_url, auth_name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True, help="a database seeded by bench.seed")
    parser.add_argument("--schema", default="bugless")
    parser.add_argument("--requests", type=int, default=200, help="timed pages per query")
    parser.add_argument("--warmup", type=int, default=10, help="untimed pages first")
    parser.add_argument(
        "--only", action="append", default=[], help="measure only this query (repeatable)"
    )
    args = parser.parse_args()
    run(args.database_url, args.schema, args.requests, args.warmup, tuple(args.only))


if __name__ == "__main__":
    main()
