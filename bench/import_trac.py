"""``python -m bench.import_trac``: the bench/peers Trac data set through ``bugless import``.

    python -m bench.import_trac [--issues 10000] [--workdir DIR] [--concurrency 8]
        [--batch-size 0 --batch-size 50]

Steps: draw the bench/peers data set (:func:`bench.peers._export.export`, the
issues every peer tracker is loaded with; the vocabulary is the generator's
candidate list, since no bugless seed runs here, so words differ from a
``bench.peers`` run while counts, people, components, statuses and history
lengths are the same); load it into a Trac environment (SQLite) with the
peers' own loader (``bench/peers/_trac_load.py``: Trac's ``Ticket.insert`` and
``save_changes``), once per size; start PostgreSQL, the Model and the
Authenticator (:class:`bench._services.BenchStack`); then time one
``bugless import trac`` run end to end: reading Trac through its API,
matching people, creating components, and every ImportIssue with its history.
Prints issues/s and entries/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._dataset import component_tree, vocabulary_candidates
from bench._services import BenchStack, CpuMeter, load_average
from bench.peers._export import export
from bugless_core.clients import ServiceAddress, call
from bugless_import import ImportSettings, run_import
from bugless_import.sources.trac import TracImporter
from bugless_proto import v1

#: Where installs and data go unless --workdir says otherwise (no machine path).
_TEMP = Path(tempfile.gettempdir())

LOADER = Path(__file__).parent / "peers" / "_trac_load.py"
SEED = 20260101
PASSWORD = "bench-import-password"


def _mapping(path: Path) -> Path:
    """The data set's vocabulary (bugless names written lower case) back to bugless."""
    statuses = [v1.Status(v).name for v in range(1, 11)]
    resolutions = {
        "FIXED": "fixed", "VERIFIED": "fixed", "WONT_FIX_NOT_REPRODUCIBLE": "worksforme",
        "WONT_FIX_INTENDED_BEHAVIOR": "invalid", "WONT_FIX_OBSOLETE": "wontfix",
        "WONT_FIX_INFEASIBLE": "wontfix", "DUPLICATE": "duplicate",
    }  # fmt: skip
    lines = ["[statuses]"]
    seen: set[str] = set()
    for name in statuses:  # several statuses share a Trac resolution: the first wins
        key = f"closed/{resolutions[name]}" if name in resolutions else name.lower()
        if key not in seen:
            seen.add(key)
            lines.append(f'"{key}" = "{name}"')
    lines += ["[priorities]", *(f'"p{n}" = "P{n}"' for n in range(5)), "[types]"]
    lines += [f'"{t.name.lower()}" = "{t.name}"' for t in v1.IssueType if t.value]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def prepare(workdir: Path, issues: int) -> Path:
    """The Trac environment holding the data set (made once per size)."""
    env_dir = workdir / f"trac-{issues}"
    if (env_dir / "loaded").exists():
        return env_dir
    dataset = workdir / f"dataset-{issues}"
    words = vocabulary_candidates(SEED)
    components = {spec.path: n for n, spec in enumerate(component_tree(SEED), start=1)}
    export(dataset, issues=issues, seed=SEED, words=words, component_ids=components)
    admin = Path(sys.executable).with_name("trac-admin")
    subprocess.run(
        [str(admin), str(env_dir), "initenv", "bench", "sqlite:db/trac.db"],
        check=True,
        capture_output=True,
    )
    started = time.perf_counter()
    subprocess.run([sys.executable, str(LOADER), str(env_dir), str(dataset)], check=True)
    print(f"trac: {issues} tickets loaded in {time.perf_counter() - started:.0f} s")
    (env_dir / "loaded").write_text("ok\n")
    return env_dir


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


def _run_once(env_dir: Path, workdir: Path, concurrency: int, batch_size: int) -> str:
    """One import on a fresh stack; its figures as one line."""
    bench = BenchStack.start()
    try:
        stack = bench.stack
        stack.add_user("bench-importer", PASSWORD, groups=["importers"])
        files = stack.pki.service_certificate("import")
        model, auth = stack.model, stack.auth
        token = asyncio.run(_token(auth))
        settings = ImportSettings(
            model=ServiceAddress(model.host, model.port),
            auth=ServiceAddress(auth.host, auth.port),
            tls_ca=stack.pki.ca_file,
            tls_cert=files.cert,
            tls_key=files.key,
            token=token,
            mapping=_mapping(workdir / "mapping.toml"),
            state_dir=bench.directory / "import-state",
            concurrency=concurrency,
            batch_size=batch_size,
            quiet=True,
        )
        importer = TracImporter(str(env_dir), {})
        meter = CpuMeter({**bench.service_pids(), "import": os.getpid()})
        meter.start()
        started = time.perf_counter()
        report = asyncio.run(run_import(importer, settings))
        seconds = time.perf_counter() - started
        cpu = meter.stop()
        load = load_average()
    finally:
        bench.stop()
    print(report.render())
    done = report.created + report.extended + report.unchanged
    per_issue = " · ".join(f"{name} {1000 * cpu[name] / done:.2f}" for name in sorted(cpu))
    total = sum(cpu.values())
    mode = f"ImportIssues x{batch_size}" if batch_size else "ImportIssue per issue"
    return (
        f"{mode}: {done} issues, {report.entries_written} entries in {seconds:.1f} s: "
        f"{done / seconds:.0f} issues/s, {report.entries_written / seconds:.0f} entries/s; "
        f"CPU ms/issue: {per_issue}; all {1000 * total / done:.2f} "
        f"(about {2 * done / total:.0f} issues/s on 2 idle cores); load {load}"
    )


def main() -> None:
    """Prepare, import (each mode asked for, each on a fresh stack), print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=10_000)
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "bugless-bench-import"
    )
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--batch-size",
        type=int,
        action="append",
        help="issues per ImportIssues call; 0: one ImportIssue per issue (the earlier path); "
        "repeat to compare side by side (default: 0 and 50)",
    )
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    env_dir = prepare(args.workdir, args.issues)
    lines = [
        _run_once(env_dir, args.workdir, args.concurrency, size)
        for size in (args.batch_size or [0, 50])
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
