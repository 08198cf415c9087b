"""The comparison table: one row per workload, one column group per tracker.

Throughput is successful requests (issues, for creates) per second; bugless'
ratio is to the best peer of the row (bugless' variants, such as
``bugless-2w``, are not peers). The targets are 10x on reads and 5x on
creates.
"""

from __future__ import annotations

from bench.peers._loadgen import LoadResult

#: Workload key -> the row label.
WORKLOADS = {
    "list": "open issues of one component by priority, 50 rows",
    "search": "full-text search, word in ~1% of issues, 50 rows (Trac: its fixed 10)",
    "search10": "the same search, 10 rows (Trac's page size)",
    "issue": "issue page with 30 comments",
    "create": "create issue through the API (issues/s)",
}
TARGETS = {"list": 10.0, "search": 10.0, "search10": 10.0, "issue": 10.0, "create": 5.0}
SELF = "bugless"


def _cell(result: LoadResult | None) -> str:
    if result is None:
        return "-"
    text = f"{result.throughput:,.1f} ({result.p50_ms:,.0f} / {result.p99_ms:,.0f})"
    if result.errors:
        text += f" [{result.errors} err]"
    return text


def render_table(results: dict[str, dict[str, LoadResult]], serving: dict[str, str]) -> str:
    """The Markdown table: req/s (p50 / p99 ms) per tracker, and bugless' ratio."""
    names = list(results)
    header = ["workload", *names]
    if SELF in results and len(names) > 1:
        header.append(f"{SELF} / best peer (target)")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, label in WORKLOADS.items():
        row = [label] + [_cell(results[name].get(key)) for name in names]
        if SELF in results and len(names) > 1:
            peers = [
                results[n][key].throughput
                for n in names
                if not n.startswith(SELF) and key in results[n]
            ]
            mine = results[SELF].get(key)
            best = max(peers, default=0.0)
            if mine is not None and best > 0:
                ratio = mine.throughput / best
                verdict = "met" if ratio >= TARGETS[key] else "SHORT"
                row.append(f"{ratio:,.1f}x ({TARGETS[key]:.0f}x: {verdict})")
            else:
                row.append("-")
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append("Cells: successful req/s (p50 / p99 latency, ms).")
    lines.append("")
    lines.extend(_cpu_table(results))
    lines.append("")
    lines.append(
        "Cells: CPU ms per successful request, the tracker's processes + PostgreSQL "
        "(load average at the start-end of the run)."
    )
    lines.extend(f"- {name}: {how}" for name, how in serving.items())
    return "\n".join(lines)


def _cpu_table(results: dict[str, dict[str, LoadResult]]) -> list[str]:
    """CPU ms per request per tracker and workload: the figure a noisy machine keeps."""
    names = list(results)
    lines = [
        "| workload (CPU ms/req) | " + " | ".join(names) + " |",
        "|" + "---|" * (len(names) + 1),
    ]
    for key, label in WORKLOADS.items():
        cells = []
        for name in names:
            r = results[name].get(key)
            cells.append(
                "-"
                if r is None
                else f"{r.server_cpu_ms:,.2f} + {r.postgres_cpu_ms:,.2f} "
                f"({r.load[0]:.1f}-{r.load[1]:.1f})"
            )
        lines.append("| " + " | ".join([label, *cells]) + " |")
    return lines
