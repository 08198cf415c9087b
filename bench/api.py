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

The calls each client process makes are in :mod:`bench._api_calls`, how a row
is measured and printed in :mod:`bench._api_measure`, the profilers in
:mod:`bench._api_profile`.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import asyncpg

from bench import _dataset as data
from bench._api_calls import BATCH_ITEMS, SEARCH_PAGE, SEARCH_QUERY, api_client
from bench._api_measure import header, measure, print_ratios, row
from bench._api_profile import profile_services
from bench._load import LoadResult
from bench._services import METRICS_ENV, UNLIMITED_RATE, BenchStack, add_directory_users
from bench.seed import SeedOptions, seed_and_verify


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
                "address": api_address.authority,
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
        results: dict[tuple[str, str, int], list[LoadResult]] = {}
        print("\n" + header(), flush=True)
        for round_number in range(repeat):
            # The APIs take turns at going first: in one order the first API
            # measured in a round paid 0.05-0.15 ms more CPU per GetIssue
            # whichever code it ran (JOURNAL.md, "Session 19").
            order = _rotated(list(apis), round_number)
            for call, target, scenario in _read_series(order, only):
                for clients in concurrency:
                    result, cpu = measure(
                        bench, scenario, _for_target(params, apis, target), clients, seconds=seconds
                    )
                    results.setdefault((call, target, clients), []).append(result)
                    print(row(call, target, clients, result, cpu), flush=True)
            for clients in [c for c in concurrency if c > 1 and "create" in only]:
                for target, scenario, per_call in (
                    *(
                        (f"{target}{suffix}", scenario, 1)
                        for suffix in order
                        for target, scenario in (
                            ("api", "bench._api_calls:api_create"),
                            ("api-c", "bench._cclient:api_create"),
                        )
                    ),
                    ("model", "bench._api_calls:model_create", 1),
                    (f"m-b{BATCH_ITEMS}", "bench._api_calls:model_batch_create", BATCH_ITEMS),
                ):
                    result, cpu = measure(
                        bench, scenario, _for_target(params, apis, target), clients, seconds=seconds
                    )
                    if per_call == 1:  # the batch row's rate is in issues: kept out of ratios
                        results.setdefault(("create", target, clients), []).append(result)
                    line = row("create", target, clients, result, cpu, per_call=per_call)
                    print(line, flush=True)
            print(f"-- end of round {round_number + 1}", flush=True)
        print_ratios(results, concurrency, list(apis))
        first = next(iter(apis))
        profile_services(
            bench,
            params,
            profile_seconds,
            only,
            api=f"api-{first[1:]}" if first else "api",
            keep=profile_dir,
        )
    finally:
        bench.stop()


def _rotated(labels: list[str], round_number: int) -> list[str]:
    """``labels`` started ``round_number`` places along, so each goes first in turn."""
    shift = round_number % len(labels)
    return labels[shift:] + labels[:shift]


def _read_series(order: list[str], only: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """The read rows of one round: each API of ``order`` in turn, then the floors."""
    series = [
        *(
            (call, f"{target}{suffix}", scenario)
            for suffix in order
            for call, target, scenario in (
                ("get", "api", "bench._api_calls:api_get"),
                ("get", "api-c", "bench._cclient:api_get"),
            )
        ),
        ("get", "model", "bench._api_calls:model_get"),
        ("get", "echo", "bench._api_calls:echo"),
        ("get", "echo-c", "bench._cclient:echo"),
        *(("search", f"api{suffix}", "bench._api_calls:api_search") for suffix in order),
        ("search", "model", "bench._api_calls:model_search"),
    ]
    # The echo is every ratio's floor: measured whenever anything is.
    return [s for s in series if s[0] in only or s[1].startswith("echo")]


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
            "cached": ({**common, "address": address.authority}, "model", "api"),
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
                result, cpu = measure(
                    bench, "bench._api_calls:api_get", params, clients, seconds=seconds
                )
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
    async with api_client({**params, "client": 0}) as client:
        identity = await client.whoami()
    assert identity.user is not None
    return identity.user.user_id


async def _sample_sizes(params: dict[str, Any]) -> dict[str, int]:
    async with api_client({**params, "client": 0}) as client:
        issue = await client.get_issue(params["issue_ids"][0])
        found = await client.search_issues(SEARCH_QUERY, page_size=SEARCH_PAGE)
    return {"get": len(bytes(issue)), "search": len(bytes(found)), "search_hits": len(found.issues)}


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
        "backends, each going first in turn from round to round); NAME=VALUE words are its "
        "environment "
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
