"""py-spy and perf of :mod:`bench.api`'s API process and Model under 16 clients.

``bench.web`` records its web process with the same :func:`perf_record` and
:func:`perf_summary`.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from bench._load import default_processes, run_load
from bench._services import BenchStack, load_average, profile, summarize_profile


def profile_services(
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
        ("get", "bench._api_calls:api_get"),
        ("search", "bench._api_calls:api_search"),
        ("create", "bench._api_calls:api_create"),
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
                spies.append(perf_record(pids[api], seconds, native))

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
            print(perf_summary(native))


def perf_record(pid: int, seconds: float, output: Path) -> subprocess.Popen[bytes]:
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


def perf_summary(path: Path, top: int = 8) -> str:
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
