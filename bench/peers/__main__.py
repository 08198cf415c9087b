"""``python -m bench.peers``: install, load and measure the peers and bugless.

    python -m bench.peers [--issues 10000] [--workdir DIR]
                          [--only trac,roundup,redmine,bugless] [--seconds 20]

Steps: start the shared PostgreSQL cluster; seed bugless and export the same
data set (once per size); install and load each peer (once per size: a
``loaded`` marker in its directory skips it); then, one tracker at a time,
serve it, remove issues a previous create run left, warm up, and measure the
read workloads with ``wrk`` and the create workload with the asyncio
generator, taking the CPU the tracker's processes and PostgreSQL spent per
request and the load average around each run (:mod:`bench.peers._cpu`).
Prints the tables (Markdown) and writes them with the raw figures to
``<workdir>/results-<issues>.json``. Every server is stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import httpx

from bench.peers._bugless import BuglessPeer, BuglessTwoWorkersPeer, seeded_for_auth
from bench.peers._cpu import CpuSample, postmaster_pid, sample
from bench.peers._export import DatasetMeta, export, long_comments_of
from bench.peers._loadgen import LoadResult, run_calls, run_wrk
from bench.peers._peer import Peer, PeerContext, run
from bench.peers._postgres import Cluster
from bench.peers._redmine import RedminePeer
from bench.peers._report import WORKLOADS, render_table
from bench.peers._roundup import RoundupPeer
from bench.peers._trac import TracPeer

#: Where installs and data go unless --workdir says otherwise (no machine path).
_TEMP = Path(tempfile.gettempdir())

PEERS: dict[str, type[Peer]] = {
    "trac": TracPeer,
    "roundup": RoundupPeer,
    "redmine": RedminePeer,
    "bugless": BuglessPeer,
    # bugless with two web processes, to measure beside ``bugless`` (not a peer).
    "bugless-2w": BuglessTwoWorkersPeer,
}


@dataclass(frozen=True)
class RunOptions:
    """How to run the comparison.

    Attributes:
        workdir: Where venvs, trackers, the cluster and the data set live.
        issues: Size of the data set.
        seed: Seed of the data set.
        only: Trackers to measure, in this order.
        seconds: Duration of each measured read run.
        warmup_seconds: Unmeasured run before each read workload.
        concurrency: Connections (reads) and workers (creates).
        create_seconds: Upper bound on the duration of the create run.
        create_requests: Upper bound on the number of creates.
        install_only: Install and load, measure nothing.
    """

    workdir: Path
    issues: int
    seed: int
    only: tuple[str, ...]
    seconds: float
    warmup_seconds: float
    concurrency: int
    create_seconds: float
    create_requests: int
    install_only: bool


def _dataset(options: RunOptions, cluster: Cluster) -> tuple[Path, DatasetMeta]:
    """Seed bugless and export the data set, unless both are there already."""
    dataset_dir = options.workdir / f"dataset-{options.issues}"
    meta_file = dataset_dir / "meta.json"
    # Its user ids must be those of the Authenticator's database as it is.
    if meta_file.exists() and seeded_for_auth(cluster, options.issues):
        return dataset_dir, DatasetMeta.load(meta_file)
    print(f"seeding bugless with {options.issues:,} issues", flush=True)
    words, components = BuglessPeer.seed(options.workdir, cluster, options.issues, options.seed)
    meta = export(
        dataset_dir, issues=options.issues, seed=options.seed, words=words, component_ids=components
    )
    print(
        f"  data set in {dataset_dir}: list component {meta.list_component!r} "
        f"({meta.list_open_issues} open), search word {meta.search_word!r} "
        f"({meta.search_issues} issues), long issue {meta.long_issue}",
        flush=True,
    )
    return dataset_dir, meta


def _prepare(peer: Peer) -> None:
    started = time.perf_counter()
    peer.install()
    if not peer.loaded_marker.exists():
        print(f"{peer.name}: loading (log: {peer.home})", flush=True)
        peer.load()
        peer.loaded_marker.write_text(f"{time.perf_counter() - started:.0f} s\n")
    print(f"{peer.name}: ready ({peer.loaded_marker.read_text().strip()} to load)", flush=True)


def _check_pages(peer: Peer, urls: dict[str, str], headers: dict[str, str]) -> None:
    """Fetch each read page once, keep it, and check it shows what it should.

    The search pages must show the search word, the issue page the last of
    the long issue's comments; pages are saved under ``<peer home>/pages``.
    """
    meta = peer.context.meta
    last_comment = long_comments_of(peer.context.dataset_dir, meta.long_issue)[-1]
    expected = {
        "list": [],
        "search": [meta.search_word],
        "search10": [meta.search_word],
        "issue": [" ".join(last_comment.split()[:3])],
    }
    pages = peer.home / "pages"
    pages.mkdir(exist_ok=True)
    for workload, url in urls.items():
        response = httpx.get(url, headers=headers, timeout=120.0)
        (pages / f"{workload}.html").write_text(response.text)
        missing = [text for text in expected[workload] if text not in response.text]
        if response.status_code != 200 or missing:
            msg = (
                f"{peer.name} {workload} page {url}: status {response.status_code}, "
                f"missing {missing} (saved in {pages})"
            )
            raise RuntimeError(msg)


def _with_cpu(result: LoadResult, before: CpuSample, after: CpuSample) -> LoadResult:
    """``result`` with the CPU per successful request and the load of its run."""
    done = max(1, result.requests - result.errors)
    return replace(
        result,
        server_cpu_ms=(after.server - before.server) * 1000.0 / done,
        postgres_cpu_ms=(after.postgres - before.postgres) * 1000.0 / done,
        load=(before.load, after.load),
    )


def _report(peer: Peer, workload: str, result: LoadResult) -> None:
    unit = "issues/s" if workload == "create" else "req/s"
    print(
        f"  {peer.name} {workload}: {result.throughput:.1f} {unit}, p50 "
        f"{result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, {result.errors} errors; "
        f"CPU ms/req {result.server_cpu_ms:.2f} server + {result.postgres_cpu_ms:.2f} "
        f"postgres; load {result.load[0]:.1f}-{result.load[1]:.1f} {result.note}",
        flush=True,
    )


def _measure(peer: Peer, options: RunOptions) -> dict[str, LoadResult]:
    peer.reset_creates()
    results: dict[str, LoadResult] = {}
    postmaster = postmaster_pid(peer.context.cluster.data_dir)
    with peer.serve() as base_url:
        targets = peer.read_targets(base_url)
        urls = {"list": targets.list_url, "search": targets.search_url, "issue": targets.issue_url}
        if targets.search10_url is not None:
            urls["search10"] = targets.search10_url
        _check_pages(peer, urls, targets.headers)
        for workload, url in urls.items():
            run_wrk(
                url,
                targets.headers,
                concurrency=options.concurrency,
                seconds=options.warmup_seconds,
            )
            before = sample(postmaster)
            result = run_wrk(
                url, targets.headers, concurrency=options.concurrency, seconds=options.seconds
            )
            results[workload] = _with_cpu(result, before, sample(postmaster))
            _report(peer, workload, results[workload])
        results["create"] = asyncio.run(_creates(peer, base_url, options, postmaster))
        _report(peer, "create", results["create"])
    peer.reset_creates()
    return results


async def _creates(peer: Peer, base_url: str, options: RunOptions, postmaster: int) -> LoadResult:
    call, close = peer.create_call(base_url)
    try:
        await run_calls(
            call,
            concurrency=options.concurrency,
            seconds=10.0,
            max_requests=options.concurrency * 3,
        )
        before = sample(postmaster)
        result = await run_calls(
            call,
            concurrency=options.concurrency,
            seconds=options.create_seconds,
            max_requests=options.create_requests,
            first=1000,
        )
        return _with_cpu(result, before, sample(postmaster))
    finally:
        await close()


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.peers", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "bugless-peers"
    )
    parser.add_argument("--issues", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--only",
        default=",".join(name for name in PEERS if name != BuglessTwoWorkersPeer.name),
        help="comma-separated trackers, in measuring order (also: bugless-2w, bugless with "
        "two web processes per web tier, to measure beside bugless)",
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup-seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--create-seconds", type=float, default=20.0)
    parser.add_argument("--create-requests", type=int, default=5_000)
    parser.add_argument(
        "--install-only", action="store_true", help="install and load, measure nothing"
    )
    parser.add_argument(
        "--stop-cluster",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="stop the PostgreSQL cluster at the end (default: yes)",
    )
    args = parser.parse_args()
    only = tuple(name.strip() for name in args.only.split(",") if name.strip())
    unknown = [name for name in only if name not in PEERS]
    if unknown:
        parser.error(f"--only: unknown {unknown}; choose from {list(PEERS)}")
    options = RunOptions(
        workdir=args.workdir,
        issues=args.issues,
        seed=args.seed,
        only=only,
        seconds=args.seconds,
        warmup_seconds=args.warmup_seconds,
        concurrency=args.concurrency,
        create_seconds=args.create_seconds,
        create_requests=args.create_requests,
        install_only=args.install_only,
    )
    options.workdir.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(options.workdir / "pgdata")
    cluster.start()
    try:
        cluster.wait_ready()
        dataset_dir, meta = _dataset(options, cluster)
        context = PeerContext(options.workdir, cluster, dataset_dir, meta)
        peers = [PEERS[name](context) for name in only]
        for peer in peers:
            _prepare(peer)
        if options.install_only:
            return
        if shutil.which("wrk") is None:
            run(
                ["apt-get", "install", "-y", "--no-install-recommends", "wrk"],
                env={"DEBIAN_FRONTEND": "noninteractive"},
            )
        results: dict[str, dict[str, LoadResult]] = {}
        for peer in peers:
            print(
                f"measuring {peer.name} ({peer.serving}); load average {os.getloadavg()[0]:.1f}",
                flush=True,
            )
            results[peer.name] = _measure(peer, options)
        table = render_table(results, {p.name: p.serving for p in peers})
        print(table)
        out = options.workdir / f"results-{options.issues}.json"
        out.write_text(
            json.dumps(
                {
                    "issues": options.issues,
                    "meta": asdict(meta),
                    "options": {k: str(v) for k, v in asdict(options).items()},
                    "results": {
                        name: {w: {**asdict(r), "throughput": r.throughput} for w, r in rs.items()}
                        for name, rs in results.items()
                    },
                    "workloads": WORKLOADS,
                    "table": table,
                },
                indent=1,
            )
            + "\n"
        )
        print(f"raw figures: {out}")
    finally:
        if args.stop_cluster:
            cluster.stop()


if __name__ == "__main__":
    main()
