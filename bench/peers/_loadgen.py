"""The two load generators, the same for every tracker.

* Reads: ``wrk`` (Debian's package): one thread, a fixed number of
  keep-alive connections, a fixed duration, latency percentiles from its
  ``--latency`` histogram. A C generator keeps the client's CPU out of the
  way on a 2-core machine, where the server under test needs both cores.
* Creates: :func:`run_calls`, an asyncio loop of ``concurrency`` workers
  calling the tracker's create call (HTTP through httpx, or gRPC for
  bugless) until a request count or a deadline is reached, whichever comes
  first; each call's latency is recorded.

Every run is bounded in both count and time, and targets loopback only.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass

from bench.peers._peer import CreateCall


@dataclass(frozen=True)
class LoadResult:
    """What one measured run did.

    Attributes:
        requests: Completed requests (successful or not).
        errors: Requests that failed (non-2xx/3xx, socket errors, exceptions).
        seconds: Wall time of the measured run.
        p50_ms: Median latency.
        p99_ms: 99th percentile latency.
        note: The first error, if any.
        server_cpu_ms: CPU ms per successful request of the tracker's own
            processes (0 when not measured).
        postgres_cpu_ms: CPU ms per successful request of PostgreSQL.
        load: 1-minute load average at the start and at the end of the run.
    """

    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    note: str = ""
    server_cpu_ms: float = 0.0
    postgres_cpu_ms: float = 0.0
    load: tuple[float, float] = (0.0, 0.0)

    @property
    def throughput(self) -> float:
        """Successful requests per second."""
        return (self.requests - self.errors) / self.seconds if self.seconds else 0.0


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        msg = f"unexpected wrk latency {text!r}"
        raise ValueError(msg)
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(output: str) -> LoadResult:
    """A :class:`LoadResult` from ``wrk --latency`` output."""
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    if not (total and p50 and p99):
        msg = f"cannot read wrk output:\n{output}"
        raise ValueError(msg)
    errors = 0
    if bad := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        errors += int(bad.group(1))
    if sock := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    ):
        errors += sum(int(g) for g in sock.groups())
    return LoadResult(
        requests=int(total.group(1)),
        errors=errors,
        seconds=_ms(total.group(2) + total.group(3)) / 1000.0,
        p50_ms=_ms(p50.group(1)),
        p99_ms=_ms(p99.group(1)),
    )


def run_wrk(url: str, headers: dict[str, str], *, concurrency: int, seconds: float) -> LoadResult:
    """GET ``url`` with ``concurrency`` connections for ``seconds``."""
    wrk = shutil.which("wrk")
    if wrk is None:
        msg = "wrk is not installed (apt-get install wrk)"
        raise RuntimeError(msg)
    args = [
        wrk,
        "-t1",
        f"-c{concurrency}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "--timeout",
        "30s",
    ]
    for key, value in headers.items():
        args += ["-H", f"{key}: {value}"]
    result = subprocess.run(
        [*args, url], capture_output=True, text=True, check=True, timeout=seconds + 60
    )
    return parse_wrk(result.stdout)


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


async def run_calls(
    call: CreateCall, *, concurrency: int, seconds: float, max_requests: int, first: int = 0
) -> LoadResult:
    """Call ``call(n)`` from ``concurrency`` workers until the count or deadline.

    ``n`` runs from ``first`` upwards, one number per call, so each created
    issue is distinct.
    """
    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(first, first + max_requests))
    started = time.perf_counter()
    deadline = started + seconds

    async def worker() -> None:
        for n in counter:
            if time.perf_counter() >= deadline:
                return
            t0 = time.perf_counter()
            try:
                await call(n)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:300])
            latencies.append((time.perf_counter() - t0) * 1000.0)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return LoadResult(
        requests=len(latencies),
        errors=len(errors),
        seconds=elapsed,
        p50_ms=statistics.median(ordered) if ordered else 0.0,
        p99_ms=_percentile(ordered, 0.99),
        note=errors[0] if errors else "",
    )
