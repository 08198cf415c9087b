"""What :mod:`bench.search`'s modes call, and how a run of calls is timed.

The requests of each mode (``served``, ``grpc``, ``backend``, ``sql`` and
the ``-web`` masked variants), the preparation that fetches a later page's
token and checks that every mode answers alike, the ``--explain`` plans, and
:func:`measure`, which times concurrent clients' calls into :class:`Stats`.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import asyncpg.pool
from grpclib.exceptions import GRPCError

from bench._search_floor import CALLER, PAGE_SIZE, PRINCIPALS, floor_call
from bench._search_queries import BenchQuery
from bench._served import ServedModel
from bugless_core import limits
from bugless_core.list_columns import DEFAULT_COLUMNS
from bugless_model_postgres import (
    PostgresBackend,
    _custom_search,
    _search,
    _search_page,
    _search_refs,
)
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask


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
    from bugless_web.result_columns import read_mask  # noqa: PLC0415 - only with --web-mask

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


async def before_answers_alike(
    served: ServedModel, stub: v1.ModelStub, q: BenchQuery, label: str
) -> bool:
    """Whether the older code's Model ``label`` answers the measured page as the backend does.

    It is asked with the current Model's page token (both sign with the
    stack's one secret). An older Model that refuses the query (a term it
    does not know) or answers otherwise is not measured on it: its figures
    would be another page's.
    """
    try:
        response = await served.call(stub, _request(q, served=True))()
    except GRPCError as exc:
        print(f"  {q.name}: the {label} Model refuses it ({exc.status.name}); not measured")
        return False
    if ([i.id for i in response.issues], response.total_count) != q.expected:
        print(f"  {q.name}: the {label} Model answers another page; not measured")
        return False
    return True


async def explain(conn: asyncpg.pool.PoolConnectionProxy, q: BenchQuery) -> str:
    """The plans of the statement the Model runs for the page, custom and generic.

    A first page naming components or hotlists runs the checked statement
    (its ``refs_seen`` arms, :func:`._search_refs.seen_column`), and the
    Model runs it prepared: PostgreSQL plans it with its values each time
    (a custom plan) until, after five runs, a generic plan looks no dearer,
    then keeps that one. EXPLAIN (ANALYZE) of the statement text alone
    always shows a custom plan, so the generic one is shown too, with its
    estimated cost against the custom plan's: whether the cache would move
    to it (bench/JOURNAL.md, "plan41").
    """
    position = None
    if q.position is not None:
        position = [v.isoformat() if isinstance(v, datetime) else v for v in q.position]
    catalog = await _custom_search.load_catalog(conn, q.structured)
    compiled = _search.compile_search(q.structured, CALLER, PRINCIPALS, position, catalog)
    refs = _search_refs.references_of(q.structured) if position is None else None
    # A later page's token carries the first page's total: that page does not count.
    sql, _ = _search_page.page_statement(
        compiled, summary=True, counted=position is None, checked=refs or None
    )
    args = _search_page.page_arguments(compiled, PAGE_SIZE, limits.SEARCH_COUNT_CAP, CALLER.user_id)
    args += _search_refs.seen_arguments(refs) if refs else []
    out = [f"== {q.name}: {q.text}", sql.strip(), "-- custom plan (its values planned in):"]
    out += [r[0] for r in await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *args)]
    out += await _generic_plan(conn, sql, args)
    f = q.floor
    head = [CALLER.user_id, PRINCIPALS, *f.params, PAGE_SIZE + 1]
    tail = [limits.SEARCH_COUNT_CAP + 1] if f.one_pass else (q.position or [])
    out += [f"-- the floor's page: {f.page}"]
    out += [r[0] for r in await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {f.page}", *head, *tail)]
    return "\n".join(out)


async def _generic_plan(
    conn: asyncpg.pool.PoolConnectionProxy, sql: str, args: list[Any]
) -> list[str]:
    """How a prepared ``sql`` is planned over 10 runs, and EXPLAIN (ANALYZE) of its generic plan.

    EXPLAIN of a statement with its values (as the other plans here) plans
    them in, whatever ``plan_cache_mode`` says; only EXECUTE of a prepared
    statement runs a generic plan. Its values are given as literals, each
    quoted by PostgreSQL as the type the statement takes it as.
    """
    parameters = (await conn.prepare(sql)).get_parameters()
    literals = [
        str(await conn.fetchval(f"SELECT quote_nullable($1::{t.schema}.{t.name})", arg))
        for t, arg in zip(parameters, args, strict=True)
    ]
    execute = f"EXECUTE bench_explained ({', '.join(literals)})"
    await conn.execute(f"PREPARE bench_explained AS {sql}")
    try:
        for _ in range(10):
            await conn.execute(execute)
        generic, custom = await conn.fetchrow(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
            "WHERE name = 'bench_explained'"
        ) or (0, 0)
        out = [
            f"-- prepared, 10 runs as the Model's (plan_cache_mode auto): "
            f"{generic} on the generic plan, {custom} custom",
            "-- generic plan (what a prepared statement keeps once it looks no dearer):",
        ]
        async with conn.transaction():
            await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            out += [r[0] for r in await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {execute}")]
    finally:
        await conn.execute("DEALLOCATE bench_explained")
    return out


Calls = list[Callable[[], Awaitable[Any]]]


@dataclass
class _Targets:
    """What the modes call: the backend, the floor's pool and the two kinds of Model."""

    direct: PostgresBackend
    pool: asyncpg.Pool
    channels: list[Any]
    served: ServedModel | None
    served_channels: list[Any]
    #: Each older Model's channels, by label (``--before``).
    before_channels: dict[str, list[Any]] = field(default_factory=dict)
    #: The older Models that answer each query alike (:func:`before_answers_alike`).
    before_queries: dict[str, set[str]] = field(default_factory=dict)

    def model_pids(self, mode: str) -> list[int]:
        """The Model processes whose CPU mode ``mode`` is charged (none: not a served mode)."""
        if self.served is None or not mode.startswith("served"):
            return []
        _, _, label = mode.partition("@")
        return [self.served.befores[label].process.pid] if label else self.served.pids

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
                for label, channels in self.before_channels.items():
                    if q.name in self.before_queries.get(label, set()):
                        modes[f"served{suffix}@{label}"] = [
                            served.call(v1.ModelStub(ch), request) for ch in channels[:clients]
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
