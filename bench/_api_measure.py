"""How :mod:`bench.api` measures a row and prints it, and the ratios to the echo.

A row is one closed loop (:func:`bench._load.run_load`) with the services'
CPU metered from /proc and the backends' handled calls counted from their
``/metrics`` over the same window; the ratios at the end take each call's best
round against the echo floor measured in the same run with the same client.
"""

from __future__ import annotations

import statistics
from typing import Any

from bench._load import LoadResult, default_processes, run_load
from bench._services import BenchStack, CpuMeter, grpc_calls, load_average

#: Issue 23's targets: CreateIssue's rate, and each call's share of the bare
#: echo's rate measured in the same run with the same client.
TARGET_CREATE = 1000.0
TARGET_CREATE_RATIO = 0.35
TARGET_GET_RATIO = 0.6


def header() -> str:
    return (
        f"{'call':<7} {'target':<6} {'cli':>3} {'proc':>4} {'req/s':>8} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'err':>4} {'cli cpu':>7} {'load':>5}  CPU ms/request by service"
    )


def row(
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


def measure(
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


def _best(
    results: dict[tuple[str, str, int], list[LoadResult]], key: tuple[str, str, int]
) -> float:
    return max((r.rate for r in results.get(key, [])), default=0.0)


def print_ratios(
    results: dict[tuple[str, str, int], list[LoadResult]],
    concurrency: tuple[int, ...],
    suffixes: list[str],
) -> None:
    print("\nbest of the rounds, req/s (ratio to the echo floor / to the Model direct):")
    for clients in concurrency:
        floor = _best(results, ("get", "echo", clients))
        for call in ("get", "search", "create"):
            for suffix in suffixes:
                if (call, f"api{suffix}", clients) not in results:
                    continue  # not measured (--only)
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
        verdicts = []
        if any(("get", target, c) in results for c in concurrency):
            get_best = max(_best(results, ("get", target, c)) for c in concurrency)
            get_ratio = get_best / floor if floor else 0.0
            verdicts.append(
                f"get {get_ratio:.2f}x of >= {TARGET_GET_RATIO}x "
                f"({'met' if get_ratio >= TARGET_GET_RATIO else 'MISSED'})"
            )
        if any(("create", target, c) in results for c in concurrency):
            create_best = max(_best(results, ("create", target, c)) for c in concurrency)
            create_ratio = create_best / floor if floor else 0.0
            create_met = create_best >= TARGET_CREATE and create_ratio >= TARGET_CREATE_RATIO
            verdicts.append(
                f"create {create_best:.0f}/s = {create_ratio:.2f}x of >= {TARGET_CREATE:.0f}/s "
                f"and >= {TARGET_CREATE_RATIO}x ({'met' if create_met else 'MISSED'})"
            )
        if verdicts:
            against = f"against its own echo {floor:.0f}/s"
            print(f"  targets ({client}, {against}): " + "; ".join(verdicts))
    _print_round_ratios(results, concurrency, targets)


def _print_round_ratios(
    results: dict[tuple[str, str, int], list[LoadResult]],
    concurrency: tuple[int, ...],
    targets: list[tuple[str, str, str]],
) -> None:
    """Each round's API rate over the echo's of the *same* round, and their median.

    The targets above take the best round of each call on its own; on a shared
    host the echo's best and a call's best can come from rounds minutes apart
    (the host's speed swung 2x between rounds of one run), so one run's target
    ratio moves by +-0.15x for the same code (0.24x-0.51x across ten rounds of
    one code, bench/JOURNAL.md "Session 13"). A round pairs calls measured
    minutes apart at most.
    """
    for target, client, echo in targets:
        for clients in concurrency:
            floors = [r.rate for r in results.get(("get", echo, clients), [])]
            for call in ("get", "create"):
                rates = [r.rate for r in results.get((call, target, clients), [])]
                ratios = [rate / floor for rate, floor in zip(rates, floors, strict=False) if floor]
                if not ratios:
                    continue
                print(
                    f"  {call} {clients} clients per round ({client}, its echo of the same "
                    f"round): {', '.join(f'{r:.2f}x' for r in ratios)}; "
                    f"median {statistics.median(ratios):.2f}x"
                )
