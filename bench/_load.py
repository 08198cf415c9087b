"""A closed-loop load generator spread over client processes.

A *scenario* is named by ``"module:function"``: an async function taking a
parameter dict and returning ``(call, close)``, where ``call`` performs one
request (raising on failure) and ``close`` releases what the scenario opened.
Each of ``processes`` spawned workers opens ``concurrency / processes``
clients (each scenario instance is one client with its own connection),
warms them up; the workers then meet at a barrier and every client loops
``call`` back to back for the measured window. Latencies, errors and each
worker's own CPU seconds come back to the parent, so the report can say
whether the clients themselves were the bottleneck.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import math
import multiprocessing
import os
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bugless_core import eventloop

Call = Callable[[], Awaitable[Any]]
Close = Callable[[], Awaitable[None]]
Scenario = Callable[[dict[str, Any]], Awaitable[tuple[Call, Close]]]
#: Seconds the workers get to start, connect and warm up (then the run fails).
SETUP_SECONDS = 120.0
WARMUP_CALLS = 3


@dataclass
class LoadResult:
    """One measurement.

    Attributes:
        latencies: Seconds per successful call.
        errors: Failed calls (first message kept in ``first_error``).
        seconds: Length of the measured window.
        client_cpu: CPU seconds the client workers spent in the window.
        processes: Client processes used.
    """

    latencies: list[float]
    errors: int
    seconds: float
    client_cpu: float
    processes: int
    first_error: str = ""
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Successful calls per second."""
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        """Latency percentile ``p`` (0-100), in milliseconds."""
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))
        return ordered[index] * 1000

    @property
    def client_cpu_share(self) -> float:
        """Client CPU per client process, as a share of one core (1.0 = saturated)."""
        return self.client_cpu / (self.seconds * self.processes) if self.seconds else 0.0


def _resolve(name: str) -> Scenario:
    module, _, function = name.partition(":")
    scenario: Scenario = getattr(importlib.import_module(module), function)
    return scenario


async def _worker(
    scenario: str, params: dict[str, Any], clients: int, seconds: float, ready: Any
) -> tuple[list[float], int, str, float]:
    make = _resolve(scenario)
    opened = [await make({**params, "client": i}) for i in range(clients)]
    for call, _ in opened:
        for _ in range(WARMUP_CALLS):
            await call()
    ready.wait(timeout=SETUP_SECONDS)  # every worker ready: start together
    end_at = time.monotonic() + seconds
    latencies: list[float] = []
    errors = 0
    first_error = ""
    cpu_start = time.process_time()

    async def loop(call: Call) -> None:
        nonlocal errors, first_error
        clock = time.perf_counter
        while time.monotonic() < end_at:
            began = clock()
            try:
                await call()
            except Exception as exc:  # a failed call is counted, not fatal
                errors += 1
                first_error = first_error or f"{type(exc).__name__}: {exc}"
                continue
            latencies.append(clock() - began)

    await asyncio.gather(*(loop(call) for call, _ in opened))
    cpu = time.process_time() - cpu_start
    for _, close in opened:
        await close()
    return latencies, errors, first_error, cpu


def _run_worker(
    scenario: str, params: dict[str, Any], clients: int, seconds: float, *, ready: Any, out: Any
) -> None:
    try:
        # uvloop, as every bugless client process runs on (bugless_core.eventloop).
        out.put(eventloop.run(_worker(scenario, params, clients, seconds, ready)))
    except BaseException as exc:
        ready.abort()
        out.put(f"{type(exc).__name__}: {exc}")


def run_load(
    scenario: str,
    params: dict[str, Any],
    *,
    concurrency: int,
    processes: int,
    seconds: float,
    on_start: Callable[[], None] | None = None,
) -> LoadResult:
    """Run ``concurrency`` clients of ``scenario`` in ``processes`` workers for ``seconds``.

    The workers connect and warm up, then meet at a barrier and measure
    together. ``on_start`` is called in the parent at the barrier (to start
    CPU meters or a profiler).

    Raises:
        RuntimeError: A worker failed to set up (its error is quoted).
    """
    processes = max(1, min(processes, concurrency))
    shares = [concurrency // processes + (i < concurrency % processes) for i in range(processes)]
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(processes + 1)
    out = context.Queue()
    workers = [
        context.Process(
            target=_run_worker,
            args=(scenario, params, share, seconds),
            kwargs={"ready": ready, "out": out},
        )
        for share in shares
    ]
    for worker in workers:
        worker.start()
    results: list[Any] = []
    try:
        with contextlib.suppress(threading.BrokenBarrierError):
            ready.wait(timeout=SETUP_SECONDS)  # broken: a worker failed, see the queue
        if on_start is not None and not ready.broken:
            on_start()
        results = [out.get(timeout=SETUP_SECONDS + seconds + 60) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.terminate()
    failures = [r for r in results if isinstance(r, str)]
    if failures:
        raise RuntimeError(f"{scenario}: a client process failed: {failures[0]}")
    latencies = [x for r in results for x in r[0]]
    return LoadResult(
        latencies=latencies,
        errors=sum(r[1] for r in results),
        seconds=seconds,
        client_cpu=sum(r[3] for r in results),
        processes=processes,
        first_error=next((r[2] for r in results if r[2]), ""),
    )


def default_processes(concurrency: int) -> int:
    """Client processes for ``concurrency`` clients: one per core, at most."""
    return max(1, min(concurrency, os.cpu_count() or 1))
