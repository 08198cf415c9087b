"""``python -m bench.import_relations``: what setting imported issues' relations costs.

    python -m bench.import_relations [--issues 2000] [--rounds 2] [--ways concurrent,batched]

A Jira export drawn here (search JSON, no network): groups of ten issues,
the first the parent of the other nine, every fifth issue blocking the next
and every fiftieth a duplicate of the one before, so about 1,000 holders
of 1,100 relations per 1,000 issues. On one stack (:class:`bench._services.
BenchStack`), per round and per way of reading the holders (the order
alternating from round to round), a fresh project's issues are imported
without their relations, then the same command is run three times: without
relations again (the baseline: reading the files, matching people, finding
every issue done), with them (the relation pass sets them), and with them
once more (a re-run: all there). The figures are each run's seconds and CPU
(the importer, the Model, PostgreSQL) beyond the baseline, per holder.

Ways: ``concurrent`` reads the holders 500 per BatchGetIssues first and
runs up to ``--concurrency`` (8) changes of different issues at once (the
code's); ``batched`` the same with ``--concurrency 1``, one change at a
time (the code before session 21; the run's import, baseline included,
then also sends one ImportIssues at a time); ``per-issue`` reads and
changes each holder with a GetIssue and a ChangeIssue of its own
(``RelationSetter.PREREAD_BATCH = 0``, the first version of the pass).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench._services import BenchStack, CpuMeter, load_average
from bugless_core.clients import ServiceAddress, call
from bugless_core.importer import SourceIssue
from bugless_import import ImportSettings, run_import
from bugless_import.relations import RelationSetter
from bugless_import.sources.jira import JiraImporter
from bugless_proto import v1

PASSWORD = "bench-import-password"
#: Way -> (RelationSetter.PREREAD_BATCH, --concurrency).
WAYS = {"concurrent": (500, 8), "batched": (500, 1), "per-issue": (0, 8)}


def _issue(key: str, number: int, project: str) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "summary": f"Issue {number}",
        "created": "2022-01-01T10:00:00.000+0000",
        "updated": "2022-01-02T10:00:00.000+0000",
        "status": {"name": "Open"},
        "reporter": {"name": f"user{number % 40}"},
    }
    links: list[dict[str, Any]] = []
    if number % 10 != 1:
        fields["parent"] = {"key": f"{project}-{number - (number - 1) % 10}"}
    if number % 5 == 0:
        kind = {"name": "Blocks", "outward": "blocks", "inward": "is blocked by"}
        links.append({"type": kind, "outwardIssue": {"key": f"{project}-{number + 1}"}})
    if number % 50 == 0:
        kind = {"name": "Duplicate", "outward": "duplicates", "inward": "is duplicated by"}
        links.append({"type": kind, "outwardIssue": {"key": f"{project}-{number - 1}"}})
    fields["issuelinks"] = links
    return {"key": key, "fields": fields}


def write_export(directory: Path, project: str, issues: int) -> Path:
    """The project's search pages, 100 issues a page."""
    directory.mkdir(parents=True, exist_ok=True)
    for start in range(0, issues, 100):
        page = [
            _issue(f"{project}-{n}", n, project)
            for n in range(start + 1, min(start + 100, issues) + 1)
        ]
        (directory / f"search-{start // 100:04d}.json").write_text(
            json.dumps({"issues": page}), encoding="utf-8"
        )
    return directory


class _WithoutRelations(JiraImporter):
    """The same export with every relation left out (the baseline)."""

    def issues(self) -> Iterator[SourceIssue]:
        for issue in super().issues():
            yield dataclasses.replace(issue, relations=())


async def _token(auth: ServiceAddress) -> str:
    channel = auth.channel()
    try:
        result = await call(
            v1.AuthenticatorStub(channel).authenticate_password,
            v1.AuthenticatePasswordRequest(username="bench-importer", password=PASSWORD),
        )
    finally:
        channel.close()
    return result.token


def _timed(
    bench: BenchStack, importer: JiraImporter, settings: ImportSettings
) -> tuple[float, dict[str, float], Any]:
    """One run: its seconds, CPU seconds by process, report."""
    meter = CpuMeter({**bench.service_pids(), "import": os.getpid()})
    meter.start()
    started = time.perf_counter()
    report = asyncio.run(run_import(importer, settings))
    seconds = time.perf_counter() - started
    return seconds, meter.stop(), report


def _per(cpu: dict[str, float], baseline: dict[str, float], count: int) -> str:
    """CPU ms per relation beyond the baseline: in all, then by process."""
    extra = {name: 1000 * (cpu[name] - baseline.get(name, 0.0)) / count for name in sorted(cpu)}
    by = " · ".join(f"{name} {ms:.2f}" for name, ms in extra.items() if abs(ms) >= 0.005)
    return f"{sum(extra.values()):.2f} ({by})"


def main() -> None:
    """Import, measure each way in turn, print one line per way and round."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--ways", default="concurrent,batched", help=f"comma-separated, of {', '.join(WAYS)}"
    )
    args = parser.parse_args()
    chosen = args.ways.split(",")
    if unknown := set(chosen) - set(WAYS):
        parser.error(f"unknown ways: {', '.join(sorted(unknown))}")
    bench = BenchStack.start()
    lines: list[str] = []
    try:
        stack = bench.stack
        stack.add_user("bench-importer", PASSWORD, groups=["importers"])
        files = stack.pki.service_certificate("import")
        model, auth = stack.model, stack.auth
        base = ImportSettings(
            model=ServiceAddress(model.host, model.port),
            auth=ServiceAddress(auth.host, auth.port),
            tls_ca=stack.pki.ca_file, tls_cert=files.cert, tls_key=files.key,
            token=asyncio.run(_token(auth)), quiet=True,
        )  # fmt: skip
        for round_number in range(args.rounds):
            ways = chosen if round_number % 2 == 0 else list(reversed(chosen))
            for way in ways:
                RelationSetter.PREREAD_BATCH, concurrency = WAYS[way]
                project = f"R{round_number}{way[0].upper()}"
                export = write_export(bench.directory / project, project, args.issues)
                settings = dataclasses.replace(
                    base, state_dir=bench.directory / f"st-{project}", concurrency=concurrency
                )
                _timed(bench, _WithoutRelations(str(export), {}), settings)
                base_s, base_cpu, _ = _timed(bench, _WithoutRelations(str(export), {}), settings)
                set_s, set_cpu, report = _timed(bench, JiraImporter(str(export), {}), settings)
                again_s, again_cpu, again = _timed(bench, JiraImporter(str(export), {}), settings)
                relations, repeat = report.relations, again.relations
                assert relations is not None
                assert repeat is not None
                count = relations.set
                lines.append(
                    f"round {round_number + 1} {way}: {sum(relations.found.values())} relations "
                    f"(set {relations.set}; re-run: {repeat.present} there, {repeat.set} set); "
                    f"baseline {base_s:.2f} s; setting +{set_s - base_s:.2f} s, "
                    f"CPU ms/relation {_per(set_cpu, base_cpu, count)}; "
                    f"re-run +{again_s - base_s:.2f} s, "
                    f"CPU ms/relation {_per(again_cpu, base_cpu, count)}; load {load_average()}"
                )
                print(lines[-1], flush=True)
    finally:
        bench.stop()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
