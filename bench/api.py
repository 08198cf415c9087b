"""API frontend throughput and latency through the whole chain, next to the transport floor.

    python -m bench.api [--issues 20000] [--seconds 8] [--repeat 2] [--profile-seconds 15]
    python -m bench.api --assertion-cost [--issues 5000] [--seconds 6] [--repeat 3] [--clients 16]

Starts a throwaway PostgreSQL, seeds it (:mod:`bench.seed`), puts the seeded
people into the Authenticator's store under their seeded ids, and runs the
Model, the Authenticator and the API frontend as ``bugless ... serve``
subprocesses (:mod:`bench._services`). Clients are
:class:`bugless_api.client.BuglessClient` with a bot certificate (group
``eng``), one HTTP/2 connection each, in closed loops spread over client
processes (:mod:`bench._load`). The per-identity rate limit is set out of
reach. Measured, each ``--repeat`` times, with 1, 16 and 64 clients:

* ``get``: ``GetIssue`` of a random visible issue: client -> API (mTLS,
  identity cached per connection) -> Model -> PostgreSQL, plus one
  ``GetUsers`` to the Authenticator for the usernames;
* ``search``: ``SearchIssues`` ``is:open assignee:user0010``, 25 a page
  (one ``LookupUsers``, the Model search, one ``GetUsers``);
* the same two calls made straight to the Model (plaintext gRPC, no API);
* ``echo``: a bare grpclib service over the same mTLS settings echoing a
  payload the size of a GetIssue response (no protobuf): the transport floor;
* ``create``: ``CreateIssue`` issues/s with 16 and 64 clients (the API
  coalesces a caller's concurrent creates into ``BatchCreateIssues``), the
  same straight to the Model (``model``: one ``CreateIssue`` a call), and
  ``m-b4``: ``BatchCreateIssues`` of 4 straight to the Model, in issues/s and
  CPU per issue (the Model's side of a coalesced create at a fixed batch size).

Each row prints the 1-minute load average and the CPU milliseconds each
service spent per request (from /proc), which stay meaningful on a shared
machine when the wall-clock figures do not, and the backend calls per request
(the Model's and the Authenticator's ``/metrics``): ``model.BatchGetIssues
0.20`` means the API's coalesced batches held five GetIssue calls on average.
Then py-spy profiles the API frontend (and the Model) under 16 clients of
each call measured (``get``, ``search``, ``create``; ``--only`` picks).
Every process is stopped at the end.

``--assertion-cost`` measures only what verifying the identity assertion
costs a ``GetIssue`` (issue 14's target: at most 5 % of its CPU). Two chains
run side by side on one database and one Authenticator: the API and the Model
as deployed (a repeated assertion comes from the Model's verification cache)
and an API in front of a Model started with ``--assertion-cache-entries 0``,
which checks the Ed25519 signature of every call. Rounds alternate between
the two, so the machine's load falls on both alike; the Model's CPU ms per
request of each, and their difference, are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import itertools
import random
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from grpclib.client import Channel, UnaryUnaryMethod

from bench import _dataset as data
from bench._load import Call, Close, LoadResult, default_processes, run_load
from bench._model_reads import model_channel, random_gets
from bench._services import (
    ECHO_METHOD,
    UNLIMITED_RATE,
    BenchStack,
    CpuMeter,
    add_directory_users,
    load_average,
    profile,
    summarize_profile,
)
from bench.seed import SeedOptions, seed_and_verify
from bugless_api.client import BuglessClient
from bugless_core.clients import ServiceAddress
from bugless_core.grpc import CorkedChannel
from bugless_dev.stack import LocalStack
from bugless_proto import v1
from bugless_testing.codecs import RawCodec

SEARCH_QUERY = f"is:open assignee:{data.BENCH_ASSIGNEE}"
SEARCH_PAGE = 25
CONCURRENCY = (1, 16, 64)
#: Issue 23's targets: CreateIssue's rate, and each call's share of the bare
#: echo's rate measured in the same run with the same client.
TARGET_CREATE = 1000.0
TARGET_CREATE_RATIO = 0.35
TARGET_GET_RATIO = 0.6


# ---- scenarios (run inside the client processes) ----


def _api_client(params: dict[str, Any]) -> BuglessClient:
    return BuglessClient(
        params["address"], cert=params["cert"], key=params["key"], ca=params["ca"], timeout=30
    )


async def api_get(params: dict[str, Any]) -> tuple[Call, Close]:
    """GetIssue of a random visible issue through the API."""
    client = _api_client(params)
    ids: list[int] = params["issue_ids"]
    rng = random.Random(params["client"])

    async def call() -> None:
        await client.get_issue(rng.choice(ids))

    async def close() -> None:
        client.close()

    return call, close


async def api_search(params: dict[str, Any]) -> tuple[Call, Close]:
    """The benchmark search through the API."""
    client = _api_client(params)

    async def call() -> None:
        await client.search_issues(SEARCH_QUERY, page_size=SEARCH_PAGE)

    async def close() -> None:
        client.close()

    return call, close


async def api_create(params: dict[str, Any]) -> tuple[Call, Close]:
    """CreateIssue through the API (title, component, priority, assignee by username)."""
    client = _api_client(params)
    counter = itertools.count()
    prefix = f"bench create {params['client']}-{time.time_ns()}"

    async def call() -> None:
        await client.create_issue(
            f"{prefix}-{next(counter)}",
            params["component_id"],
            priority="P2",
            assignee=data.BENCH_ASSIGNEE,
        )

    async def close() -> None:
        client.close()

    return call, close


def _model_stub(params: dict[str, Any]) -> tuple[Channel, v1.ModelStub]:
    """A channel to the Model as the API reaches it (mutual TLS, the ``api`` identity)."""
    return model_channel(
        params["model_host"],
        params["model_port"],
        ca=params["ca"],
        cert=params["model_cert"],
        key=params["model_key"],
        assertion=params["assertion"],
    )


async def model_get(params: dict[str, Any]) -> tuple[Call, Close]:
    """GetIssue straight to the Model (mutual TLS as the API), as the API's caller."""
    channel, stub = _model_stub(params)
    caller = v1.Caller(user_id=params["caller_id"], groups=["eng"])
    return random_gets(channel, stub, caller, params["issue_ids"], params["client"])


async def model_create(params: dict[str, Any]) -> tuple[Call, Close]:
    """CreateIssue straight to the Model as the API's caller (what the API's create ends in)."""
    channel, stub = _model_stub(params)
    caller = v1.Caller(user_id=params["caller_id"], groups=["eng"])
    counter = itertools.count()
    prefix = f"bench model create {params['client']}-{time.time_ns()}"

    async def call() -> None:
        await stub.create_issue(
            v1.CreateIssueRequest(
                caller=caller,
                fields=v1.IssueFields(
                    title=f"{prefix}-{next(counter)}",
                    component_id=params["component_id"],
                    priority=v1.Priority.P2,
                ),
            )
        )

    async def close() -> None:
        channel.close()

    return call, close


#: Items per BatchCreateIssues of :func:`model_batch_create` (the API's coalescer
#: sent 2.6 on average at 16 clients, run D).
BATCH_ITEMS = 4


async def model_batch_create(params: dict[str, Any]) -> tuple[Call, Close]:
    """BatchCreateIssues of :data:`BATCH_ITEMS` straight to the Model, as the API's coalescer sends.

    The Model's side of a coalesced create at a fixed batch size (the API's
    own batch sizes follow the load); its row counts issues, not calls.
    """
    channel, stub = _model_stub(params)
    caller = v1.Caller(user_id=params["caller_id"], groups=["eng"])
    counter = itertools.count()
    prefix = f"bench model batch {params['client']}-{time.time_ns()}"

    async def call() -> None:
        items = [
            v1.CreateIssueRequest(
                fields=v1.IssueFields(
                    title=f"{prefix}-{next(counter)}",
                    component_id=params["component_id"],
                    priority=v1.Priority.P2,
                ),
            )
            for _ in range(BATCH_ITEMS)
        ]
        reply = await stub.batch_create_issues(
            v1.BatchCreateIssuesRequest(caller=caller, items=items)
        )
        if any(r.code for r in reply.results):
            raise RuntimeError(f"a batch item failed: {reply.results}")

    async def close() -> None:
        channel.close()

    return call, close


async def model_search(params: dict[str, Any]) -> tuple[Call, Close]:
    """The benchmark search straight to the Model (structured query, ids not names)."""
    from bugless_core.search import parse_query, to_structured  # noqa: PLC0415

    channel, stub = _model_stub(params)
    caller = v1.Caller(user_id=params["caller_id"], groups=["eng"])
    request = v1.SearchIssuesRequest(
        caller=caller,
        query=to_structured(
            parse_query(SEARCH_QUERY),
            me=params["caller_id"],
            users={data.BENCH_ASSIGNEE: data.BENCH_ASSIGNEE},
            today=datetime.date.today(),
        ),
        page=v1.PageRequest(page_size=SEARCH_PAGE),
    )

    async def call() -> None:
        await stub.search_issues(request)

    async def close() -> None:
        channel.close()

    return call, close


async def echo(params: dict[str, Any]) -> tuple[Call, Close]:
    """The transport floor: a bytes echo over mTLS, payload sized like a GetIssue reply."""
    address = ServiceAddress(
        "127.0.0.1",
        params["echo_port"],
        ca=Path(params["ca"]),
        cert=Path(params["echo_cert"]),
        key=Path(params["echo_key"]),
    )
    channel = CorkedChannel(address.host, address.port, ssl=address.ssl_context(), codec=RawCodec())
    method: UnaryUnaryMethod[bytes, bytes] = UnaryUnaryMethod(channel, ECHO_METHOD, bytes, bytes)
    payload = b"x" * params["payload"]

    async def call() -> None:
        await method(payload, timeout=30)

    async def close() -> None:
        channel.close()

    return call, close


# ---- the run ----


async def _prepare(bench: BenchStack, issues: int) -> dict[str, Any]:
    """Seed, add the people, pick visible ids and an open component."""
    await seed_and_verify(
        bench.stack.model_database_url, "bugless", SeedOptions(issues=issues), check=False
    )
    await add_directory_users(bench.stack, data.USERS)
    conn = await asyncpg.connect(
        bench.stack.model_database_url, server_settings={"search_path": "bugless"}
    )
    try:
        issue_ids = [
            r["id"]
            for r in await conn.fetch(
                "SELECT i.id FROM issues i JOIN components c ON c.id = i.component_id "
                "WHERE c.viewers = '{}' ORDER BY random() LIMIT 2000"
            )
        ]
        component_id = await conn.fetchval(
            "SELECT id FROM components WHERE viewers = '{}' AND parent_id <> 0 ORDER BY id LIMIT 1"
        )
    finally:
        await conn.close()
    return {"issue_ids": issue_ids, "component_id": component_id}


#: The Model and the Authenticator serve Prometheus metrics: their call counters
#: say how many backend calls a measured window made (how large the API's
#: coalesced batches were).
METRICS_ENV = {"BUGLESS_MODEL_METRICS_PORT": "0", "BUGLESS_AUTH_METRICS_PORT": "0"}
_HANDLED = re.compile(
    r'^grpc_server_handled_total\{[^}]*grpc_method="([^"]*)"[^}]*\} ([0-9.e+]+)$', re.M
)


def grpc_calls(stack: LocalStack) -> dict[str, float]:
    """Calls each backend has handled so far, by ``service.Method`` (from ``/metrics``)."""
    counts: dict[str, float] = {}
    for service in stack.services:
        if service.kind not in ("model", "auth") or not service.metrics_port:
            continue
        text = httpx.get(f"http://127.0.0.1:{service.metrics_port}/metrics", timeout=10).text
        for method, value in _HANDLED.findall(text):
            name = f"{service.kind}.{method}"
            counts[name] = counts.get(name, 0.0) + float(value)
    return counts


def _header() -> str:
    return (
        f"{'call':<7} {'target':<6} {'cli':>3} {'proc':>4} {'req/s':>8} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'err':>4} {'cli cpu':>7} {'load':>5}  CPU ms/request by service"
    )


def _row(
    call: str,
    target: str,
    clients: int,
    result: LoadResult,
    cpu: dict[str, float],
    *,
    per_call: int = 1,
) -> str:
    """One table row; ``per_call`` requests per call (a batch counts its items)."""
    done = max(1, len(result.latencies) * per_call)
    merged: dict[str, float] = {}
    for name, seconds in cpu.items():  # api, api#2, ...: one figure for the API
        merged[name.split("#")[0]] = merged.get(name.split("#")[0], 0.0) + seconds
    per_request = "  ".join(f"{k} {v * 1000 / done:.2f}" for k, v in merged.items() if v > 0.005)
    calls = sorted((k[6:], v) for k, v in result.extra.items() if k.startswith("calls:"))
    backend = ", ".join(f"{k} {v / done:.3f}" for k, v in calls if v > 0)
    return (
        f"{call:<7} {target:<6} {clients:>3} {result.processes:>4} {result.rate * per_call:>8.0f} "
        f"{result.percentile(50):>7.2f} {result.percentile(99):>7.2f} {result.errors:>4} "
        f"{result.client_cpu_share:>7.0%} {result.extra['load']:>5}  {per_request}"
        + (f"  | backend calls/request: {backend}" if backend else "")
    )


def _measure(
    bench: BenchStack,
    scenario: str,
    params: dict[str, Any],
    clients: int,
    *,
    seconds: float,
    processes: int | None = None,
) -> tuple[LoadResult, dict[str, float]]:
    meter = CpuMeter(bench.service_pids())
    counted: list[dict[str, float]] = []

    def start() -> None:
        meter.start()
        counted.append(grpc_calls(bench.stack))

    result = run_load(
        scenario,
        params,
        concurrency=clients,
        processes=processes or default_processes(clients),
        seconds=seconds,
        on_start=start,
    )
    cpu = meter.stop()
    result.extra["load"] = float(load_average())
    if counted:
        # Backend calls the measured window made (the Model's and the
        # Authenticator's /metrics): how large the API's coalesced batches were.
        # Counted from the window's start to after its end, so slightly high.
        after = grpc_calls(bench.stack)
        for name, count in after.items():
            result.extra[f"calls:{name}"] = count - counted[0].get(name, 0.0)
    if result.errors:
        print(f"    {result.errors} errors, first: {result.first_error}", flush=True)
    return result, cpu


def run(
    issues: int,
    seconds: float,
    repeat: int,
    profile_seconds: float,
    *,
    concurrency: tuple[int, ...],
    api_processes: int = 2,
    only: tuple[str, ...] = ("get", "search", "create"),
    configs: dict[str, str] | None = None,
    profile_dir: Path | None = None,
    backend_env: dict[str, str] | None = None,
) -> None:
    """Start everything, measure, profile, stop everything.

    ``backend_env``: more environment for the Model and the Authenticator
    (``PYTHONPATH`` of an older checkout runs its backends: a change to the
    Model is compared by alternating whole runs, since every config shares them).

    ``configs`` (label to ``bugless api serve`` flags, ``NAME=VALUE`` words
    its environment): one API each on the same backends, every API row
    measured for each in turn within a round, so that a noisy machine
    affects them alike. Their rows are ``api:LABEL`` (process ``api-LABEL``).
    """
    bench = BenchStack.start(extra_env={**METRICS_ENV, **(backend_env or {})})
    try:
        print(f"seeding {issues:,} issues ...", flush=True)
        prepared = asyncio.run(_prepare(bench, issues))
        apis: dict[str, dict[str, str]] = {}
        for label, flags in (configs or {"": ""}).items():
            words = flags.split()
            env = dict(w.split("=", 1) for w in words if "=" in w and not w.startswith("-"))
            api_address, api_bot = bench.start_api(
                processes=api_processes,
                name=f"api-{label}" if label else "api",
                flags=[w for w in words if w.split("=", 1)[0] not in env],
                env=env,
            )
            apis[f":{label}" if label else ""] = {
                "address": f"{api_address.host}:{api_address.port}",
                "cert": str(api_bot.cert),
                "key": str(api_bot.key),
            }
        params: dict[str, Any] = {
            **next(iter(apis.values())),
            "ca": str(bench.stack.pki.ca_file),
            "model_host": bench.stack.model.host,
            "model_port": bench.stack.model.port,
            "model_cert": str(bench.stack.identities["api"].cert),
            "model_key": str(bench.stack.identities["api"].key),
            **prepared,
        }
        identity = asyncio.run(_whoami(params))
        params["caller_id"] = identity
        params["assertion"] = bench.stack.assertion_for(identity, groups=["eng"])
        sample = asyncio.run(_sample_sizes(params))
        echo_address, _ = bench.start_echo(sample["get"])
        params.update(
            echo_port=echo_address.port,
            echo_cert=str(echo_address.cert),
            echo_key=str(echo_address.key),
            payload=sample["get"],
        )
        print(
            f"GetIssue reply {sample['get']} bytes, SearchIssues reply {sample['search']} bytes "
            f"({sample['search_hits']} issues); bot user id {identity}",
            flush=True,
        )
        series = [
            *(
                (call, f"{target}{suffix}", scenario)
                for suffix in apis
                for call, target, scenario in (
                    ("get", "api", "bench.api:api_get"),
                    ("get", "api-c", "bench._cclient:api_get"),
                )
            ),
            ("get", "model", "bench.api:model_get"),
            ("get", "echo", "bench.api:echo"),
            ("get", "echo-c", "bench._cclient:echo"),
            *(("search", f"api{suffix}", "bench.api:api_search") for suffix in apis),
            ("search", "model", "bench.api:model_search"),
        ]
        # The echo is every ratio's floor: measured whenever anything is.
        series = [s for s in series if s[0] in only or s[1].startswith("echo")]
        results: dict[tuple[str, str, int], list[LoadResult]] = {}
        print("\n" + _header(), flush=True)
        for round_number in range(repeat):
            for call, target, scenario in series:
                for clients in concurrency:
                    result, cpu = _measure(
                        bench, scenario, _for_target(params, apis, target), clients, seconds=seconds
                    )
                    results.setdefault((call, target, clients), []).append(result)
                    print(_row(call, target, clients, result, cpu), flush=True)
            for clients in [c for c in concurrency if c > 1 and "create" in only]:
                for target, scenario, per_call in (
                    *(
                        (f"{target}{suffix}", scenario, 1)
                        for suffix in apis
                        for target, scenario in (
                            ("api", "bench.api:api_create"),
                            ("api-c", "bench._cclient:api_create"),
                        )
                    ),
                    ("model", "bench.api:model_create", 1),
                    (f"m-b{BATCH_ITEMS}", "bench.api:model_batch_create", BATCH_ITEMS),
                ):
                    result, cpu = _measure(
                        bench, scenario, _for_target(params, apis, target), clients, seconds=seconds
                    )
                    if per_call == 1:  # the batch row's rate is in issues: kept out of ratios
                        results.setdefault(("create", target, clients), []).append(result)
                    row = _row("create", target, clients, result, cpu, per_call=per_call)
                    print(row, flush=True)
            print(f"-- end of round {round_number + 1}", flush=True)
        _print_ratios(results, concurrency, list(apis))
        first = next(iter(apis))
        _profile(
            bench,
            params,
            profile_seconds,
            only,
            api=f"api-{first[1:]}" if first else "api",
            keep=profile_dir,
        )
    finally:
        bench.stop()


def _for_target(
    params: dict[str, Any], apis: dict[str, dict[str, str]], target: str
) -> dict[str, Any]:
    """``params`` with the address and bot of the API a target (``api:before``) calls."""
    _, colon, label = target.partition(":")
    return {**params, **apis[colon + label]} if colon else params


def run_assertion_cost(issues: int, seconds: float, repeat: int, clients: int) -> None:
    """GetIssue through the API, the Model's verification cache on and off; see the module."""
    bench = BenchStack.start()
    try:
        print(f"seeding {issues:,} issues ...", flush=True)
        prepared = asyncio.run(_prepare(bench, issues))
        address, bot = bench.start_api(processes=1)
        stack = bench.stack
        verify_all = stack.start_model("--assertion-cache-entries", "0", name="model-verify-all")
        limits = ["--rate", UNLIMITED_RATE, "--burst", UNLIMITED_RATE]
        api_verify_all = stack.start_api(
            *limits, "--model", f"127.0.0.1:{verify_all.port}", name="api-verify-all"
        )
        bench.frontends.append(api_verify_all)
        common = {
            "cert": str(bot.cert),
            "key": str(bot.key),
            "ca": str(stack.pki.ca_file),
            **prepared,
        }
        chains = {
            "cached": ({**common, "address": f"{address.host}:{address.port}"}, "model", "api"),
            "verify-all": (
                {**common, "address": f"127.0.0.1:{api_verify_all.port}"},
                "model-verify-all",
                "api-verify-all",
            ),
        }
        model_ms: dict[str, list[float]] = {name: [] for name in chains}
        print(
            f"\n{'chain':<11} {'round':>5} {'req/s':>7} {'err':>4} {'load':>5}  "
            "CPU ms/request: api · model · auth · postgres",
            flush=True,
        )
        for round_number in range(repeat):
            for name, (params, model, api) in chains.items():
                result, cpu = _measure(bench, "bench.api:api_get", params, clients, seconds=seconds)
                done = max(1, len(result.latencies))
                per = {k: v * 1000 / done for k, v in cpu.items()}
                model_ms[name].append(per[model])
                print(
                    f"{name:<11} {round_number + 1:>5} {result.rate:>7.0f} {result.errors:>4} "
                    f"{result.extra['load']:>5}  {per[api]:.3f} · {per[model]:.3f} · "
                    f"{per['auth']:.3f} · {per['postgres']:.3f}",
                    flush=True,
                )
        cached = sum(model_ms["cached"]) / repeat
        every = sum(model_ms["verify-all"]) / repeat
        print(
            f"\nModel CPU ms per GetIssue, mean of {repeat} rounds: cached {cached:.3f}, "
            f"verifying every call {every:.3f}: the signature check costs "
            f"{every - cached:+.3f} ms ({(every - cached) / every:.0%} of a GetIssue that "
            "verifies it); a cached assertion costs what bench.assertions measures (~1 µs)",
            flush=True,
        )
    finally:
        bench.stop()


async def _whoami(params: dict[str, Any]) -> str:
    async with _api_client({**params, "client": 0}) as client:
        identity = await client.whoami()
    assert identity.user is not None
    return identity.user.user_id


async def _sample_sizes(params: dict[str, Any]) -> dict[str, int]:
    async with _api_client({**params, "client": 0}) as client:
        issue = await client.get_issue(params["issue_ids"][0])
        found = await client.search_issues(SEARCH_QUERY, page_size=SEARCH_PAGE)
    return {"get": len(bytes(issue)), "search": len(bytes(found)), "search_hits": len(found.issues)}


def _best(
    results: dict[tuple[str, str, int], list[LoadResult]], key: tuple[str, str, int]
) -> float:
    return max((r.rate for r in results.get(key, [])), default=0.0)


def _print_ratios(
    results: dict[tuple[str, str, int], list[LoadResult]],
    concurrency: tuple[int, ...],
    suffixes: list[str],
) -> None:
    print("\nbest of the rounds, req/s (ratio to the echo floor / to the Model direct):")
    for clients in concurrency:
        floor = _best(results, ("get", "echo", clients))
        for call in ("get", "search", "create"):
            for suffix in suffixes:
                api = _best(results, (call, f"api{suffix}", clients))
                model = _best(results, (call, "model", clients))
                print(
                    f"  {call:<6} {clients:>2} clients: api{suffix} {api:7.0f}  "
                    f"model {model:7.0f}  echo {floor:7.0f}  "
                    f"api/echo {api / floor if floor else 0:.2f}  "
                    f"api/model {api / model if model else 0:.2f}"
                )
    targets = [
        (f"{target}{suffix}", f"{client}{suffix}", echo)
        for suffix in suffixes
        for target, client, echo in (
            ("api", "Python client", "echo"),
            ("api-c", "C-core client", "echo-c"),
        )
    ]
    for target, client, echo in targets:
        floor = max(_best(results, ("get", echo, c)) for c in concurrency)
        get_best = max(_best(results, ("get", target, c)) for c in concurrency)
        create_best = max((_best(results, ("create", target, c)) for c in concurrency), default=0.0)
        get_ratio = get_best / floor if floor else 0.0
        create_ratio = create_best / floor if floor else 0.0
        create_met = create_best >= TARGET_CREATE and create_ratio >= TARGET_CREATE_RATIO
        print(
            f"  targets ({client}, against its own echo {floor:.0f}/s): get {get_ratio:.2f}x of "
            f">= {TARGET_GET_RATIO}x ({'met' if get_ratio >= TARGET_GET_RATIO else 'MISSED'}); "
            f"create {create_best:.0f}/s = {create_ratio:.2f}x of >= {TARGET_CREATE:.0f}/s and "
            f">= {TARGET_CREATE_RATIO}x ({'met' if create_met else 'MISSED'})"
        )


def _profile(
    bench: BenchStack,
    params: dict[str, Any],
    seconds: float,
    only: tuple[str, ...],
    *,
    api: str = "api",
    keep: Path | None = None,
) -> None:
    """py-spy (and perf) of the API process ``api`` and the Model under 16 clients.

    ``keep``: a directory to copy py-spy's raw profiles into (collapsed stacks).
    """
    if seconds <= 0:
        return
    pids = bench.service_pids()
    for call, scenario in (
        ("get", "bench.api:api_get"),
        ("search", "bench.api:api_search"),
        ("create", "bench.api:api_create"),
    ):
        if call not in only:
            continue
        outputs = {name: bench.directory / f"profile-{call}-{name}.txt" for name in (api, "model")}
        spies: list[Any] = []
        native = bench.directory / f"perf-{call}-api.data"

        def start(
            outputs: dict[str, Path] = outputs, spies: list[Any] = spies, native: Path = native
        ) -> None:
            for name, path in outputs.items():
                spies.append(profile(pids[name], seconds, path))
            if shutil.which("perf"):
                spies.append(_perf_record(pids[api], seconds, native))

        result = run_load(
            scenario,
            params,
            concurrency=16,
            processes=default_processes(16),
            seconds=seconds,
            on_start=start,
        )
        for spy in spies:
            spy.wait(timeout=seconds + 60)
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            for path in outputs.values():
                if path.exists():
                    shutil.copy(path, keep / path.name)
        print(
            f"\npy-spy, {call} with 16 clients ({result.rate:.0f} req/s under the profiler, "
            f"load {load_average()}):"
        )
        for name, path in outputs.items():
            print(f" {name}:")
            print(summarize_profile(path) if path.exists() else "  (no profile written)")
        if native.exists():
            print(" api, native (perf: on-CPU only, by library and by symbol):")
            print(_perf_summary(native))


def _perf_record(pid: int, seconds: float, output: Path) -> subprocess.Popen[bytes]:
    """``perf record`` of ``pid``: samples only while it runs on a CPU.

    py-spy samples wall-clock time and counts a runnable thread as busy, so on
    a loaded machine a process preempted right after a ``send()`` that woke its
    peer is charged to the frame that wrote: py-spy put 41-46 % of the API in
    ``CorkedTransport.flush`` where perf finds ~3 % in libssl/libcrypto and ~5 %
    in the kernel (bench/JOURNAL.md). perf cannot name Python frames on 3.11,
    but it splits the interpreter from TLS, the kernel and the collector.
    """
    return subprocess.Popen(
        [
            "perf",
            "record",
            "-F",
            "999",
            "-p",
            str(pid),
            "-o",
            str(output),
            "--",
            "sleep",
            str(seconds),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _perf_summary(path: Path, top: int = 8) -> str:
    lines: list[str] = []
    for sort in ("dso", "sym"):
        report = subprocess.run(
            ["perf", "report", "-i", str(path), "--no-children", "--sort", sort, "--stdio"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        rows = [r.strip() for r in report.splitlines() if r.strip() and not r.startswith("#")]
        lines += [f"    {row}" for row in rows[:top]]
    return "\n".join(lines) if lines else "  (perf wrote no samples)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=8.0, help="measured window per row")
    parser.add_argument("--repeat", type=int, default=2, help="rounds of every measurement")
    parser.add_argument("--profile-seconds", type=float, default=15.0, help="0: no profile")
    parser.add_argument("--clients", default="1,16,64", help="concurrent clients, comma-separated")
    parser.add_argument(
        "--api-processes", type=int, default=2, help="API processes sharing the port (--reuse-port)"
    )
    parser.add_argument(
        "--only",
        default="get,search,create",
        help="calls to measure, comma-separated (the echo floor is always measured)",
    )
    parser.add_argument(
        "--assertion-cost",
        action="store_true",
        help="only GetIssue via the API, assertion cache on vs off (uses the first --clients)",
    )
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="LABEL=FLAGS",
        help="an API to measure, with these serve flags (repeatable; side by side on the same "
        "backends); NAME=VALUE words are its environment "
        "('before=PYTHONPATH=<an older checkout>/packages/bugless-api/src:...')",
    )
    parser.add_argument(
        "--backend-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment for the Model and the Authenticator (repeatable; "
        "'PYTHONPATH=<an older checkout>/packages/bugless-model-postgres/src:...' runs its code)",
    )
    parser.add_argument(
        "--profile-dir",
        type=Path,
        default=None,
        help="keep py-spy's raw profiles here (collapsed stacks, one file per call and service)",
    )
    args = parser.parse_args()
    concurrency = tuple(int(c) for c in args.clients.split(","))
    if args.assertion_cost:
        run_assertion_cost(args.issues, args.seconds, args.repeat, concurrency[0])
        return
    run(
        args.issues,
        args.seconds,
        args.repeat,
        args.profile_seconds,
        concurrency=concurrency,
        api_processes=args.api_processes,
        only=tuple(args.only.split(",")),
        configs=dict(c.partition("=")[::2] for c in args.config),
        profile_dir=args.profile_dir,
        backend_env=dict(e.partition("=")[::2] for e in args.backend_env),
    )


if __name__ == "__main__":
    main()
