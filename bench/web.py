"""Web frontend requests/s and p99 for the issue list and the issue page, on 100,000 issues.

    python -m bench.web [--issues 100000] [--seconds 10] [--repeat 2] [--profile-seconds 15]

Starts a throwaway PostgreSQL, seeds it (:mod:`bench.seed`), puts the seeded
people into the Authenticator's store under their seeded ids (so every name
on a page is joined from a real user), runs the Model, the Authenticator and
``bugless web serve`` (uvicorn) as subprocesses (:mod:`bench._services`),
gives one issue a 30-entry history through the Model (comments, assignee,
cc, priority and status changes), signs in as ``user0042`` (group ``eng``)
by posting the sign-in form, and checks both pages once. Then ``wrk`` (C,
so the load generator takes little of the 2 cores) hammers, with the session
cookie, each ``--repeat`` times with 1 and 32 connections:

* ``list``: ``/search?q=is:open`` -- 50 rows, people and component paths joined;
* ``issue``: ``/issues/<id>`` -- the issue with its 30 history entries;

and with ``--pages``, on a hotlist of the viewer's holding 50 issues:

* ``hotlist``: ``/hotlists/<id>`` -- the whole page;
* ``rows``: ``/hotlists/<id>/rows`` -- the rows its page polls every 10 s;
* ``rows304``: the same poll with the ``If-None-Match`` of the rows it drew,
  the answer of a poll while nothing changed (a 304).

Each row prints the 1-minute load average, the CPU milliseconds each
service spent per request (from /proc) and the gRPC calls one page made to
the Model and the Authenticator (their ``/metrics`` counters). Then py-spy
profiles the web frontend under 32 connections of each page. Every process is
stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench import _dataset as data
from bench._api_profile import perf_record, perf_summary
from bench._services import (
    METRICS_ENV,
    VIEWER,
    VIEWER_PASSWORD,
    BenchStack,
    CpuMeter,
    add_directory_users,
    grpc_calls,
    load_average,
    profile,
    summarize_profile,
)
from bench.seed import SeedOptions, seed_and_verify
from bugless_core.clients import acting_as
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask

LIST_PATH = "/search?q=is%3Aopen"
#: Issues on the bench's hotlist (``--pages hotlist,rows,rows304``).
HOTLIST_ITEMS = 50
PAGES = ("list", "issue", "hotlist", "rows", "rows304")
HISTORY_ENTRIES = 30
CONNECTIONS = (1, 32)


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run reported."""

    rate: float
    p50_ms: float
    p99_ms: float
    requests: int
    bad: int
    load: str


async def _prepare(bench: BenchStack, issues: int) -> tuple[int, int]:
    """Seed, add the people, write the 30-entry issue and the hotlist; their ids."""
    await seed_and_verify(
        bench.stack.model_database_url, "bugless", SeedOptions(issues=issues), check=False
    )
    await add_directory_users(bench.stack, data.USERS)
    conn = await asyncpg.connect(
        bench.stack.model_database_url, server_settings={"search_path": "bugless"}
    )
    try:
        component_id = await conn.fetchval(
            "SELECT id FROM components WHERE viewers = '{}' AND parent_id <> 0 ORDER BY id LIMIT 1"
        )
        # Issues of open components whose parents are open too: the viewer sees them all.
        listed = await conn.fetch(
            "SELECT i.id FROM issues i JOIN components c ON c.id = i.component_id "
            "WHERE NOT EXISTS (SELECT 1 FROM components p "
            "WHERE p.id = ANY (c.path_ids) AND p.viewers <> '{}') ORDER BY i.id LIMIT $1",
            HOTLIST_ITEMS,
        )
    finally:
        await conn.close()
    issue_id = await _long_issue(bench, int(component_id))
    return issue_id, await _hotlist(bench, [r["id"] for r in listed])


async def _hotlist(bench: BenchStack, issue_ids: list[int]) -> int:
    """The viewer's hotlist of ``issue_ids``, each with a note; its id."""
    channel = bench.stack.model.channel()
    model = v1.ModelStub(channel)
    caller = v1.Caller(user_id=VIEWER, groups=["eng"])
    try:
        with acting_as(bench.stack.assertion_for(VIEWER, groups=["eng"])):
            hotlist = await model.create_hotlist(
                v1.CreateHotlistRequest(caller=caller, name="Release blockers")
            )
            for n, issue_id in enumerate(issue_ids):
                await model.add_hotlist_items(
                    v1.AddHotlistItemsRequest(
                        caller=caller,
                        hotlist_id=hotlist.id,
                        issue_ids=[issue_id],
                        position=-1,
                        note=f"blocks rollout step {n}",
                    )
                )
    finally:
        channel.close()
    return hotlist.id


async def _long_issue(bench: BenchStack, component_id: int) -> int:
    """An issue with HISTORY_ENTRIES entries, written through the Model."""
    channel = bench.stack.model.channel()
    model = v1.ModelStub(channel)
    people = [data.user_id(k) for k in range(1, 40)]
    try:
        with acting_as(bench.stack.assertion_for(VIEWER, groups=["eng"])):
            issue = await model.create_issue(
                v1.CreateIssueRequest(
                    caller=v1.Caller(user_id=VIEWER, groups=["eng"]),
                    fields=v1.IssueFields(
                        title="Checkout times out under load after the cache change",
                        priority=v1.Priority.P2,
                        type=v1.IssueType.BUG,
                        component_id=component_id,
                        assignee=people[1],
                    ),
                    description="Steps:\n1. open checkout\n2. wait\n\nExpected: a page. Got: 504.",
                    cc=people[2:5],
                )
            )
        version = issue.version
        for n in range(1, HISTORY_ENTRIES):
            author = people[n % len(people)]
            delta = v1.IssueDelta()
            if n % 5 == 1:
                delta = v1.IssueDelta(
                    fields=v1.IssueFields(assignee=people[(n * 7) % len(people)]),
                    update_mask=FieldMask(paths=["assignee"]),
                )
            elif n % 5 == 2:
                delta = v1.IssueDelta(cc_add=[people[(n * 3) % len(people)]])
            elif n % 5 == 3:
                delta = v1.IssueDelta(
                    fields=v1.IssueFields(priority=v1.Priority(1 + n % 4)),
                    update_mask=FieldMask(paths=["priority"]),
                )
            elif n % 5 == 4 and n < HISTORY_ENTRIES - 1:
                status = v1.Status.ACCEPTED if n % 10 == 4 else v1.Status.ASSIGNED
                delta = v1.IssueDelta(
                    fields=v1.IssueFields(status=status), update_mask=FieldMask(paths=["status"])
                )
            acting = acting_as(
                bench.stack.assertion_for(author, groups=["eng"], permissions=["admin"])
            )
            with acting:
                reply = await model.change_issue(
                    v1.ChangeIssueRequest(
                        caller=v1.Caller(user_id=author, groups=["eng"], admin=True),
                        issue_id=issue.id,
                        expected_version=version,
                        delta=delta,
                        comment=f"Comment {n}: tried `retry={n}` on canary; **still** failing "
                        f"for {n * 3}% of requests. See https://example.org/runbook#{n}.",
                    )
                )
            assert reply.issue is not None
            version = reply.issue.version
    finally:
        channel.close()
    if version != HISTORY_ENTRIES:
        raise RuntimeError(f"issue {issue.id} has {version} entries, not {HISTORY_ENTRIES}")
    return issue.id


def _start_web(bench: BenchStack, flags: str) -> str:
    """One web frontend; ``NAME=VALUE`` words among the flags are its environment.

    ``PYTHONPATH=DIR`` runs the ``bugless_web`` found in DIR (an export of an
    earlier commit's ``packages/bugless-web/src``), so that code before and
    after a change is measured side by side in one run.
    """
    words = flags.split()
    env = dict(w.split("=", 1) for w in words if "=" in w and not w.startswith("-"))
    # Not --dev: served as in production (and as bench.peers serves it), so
    # that no render checks its templates' files for changes.
    flags_only = [w for w in words if w.split("=", 1)[0] not in env]
    return bench.start_web(*flags_only, env=env, dev=False)


def _sign_in(url: str) -> str:
    """Post the sign-in form (with its CSRF token); the signed-in ``Cookie`` header value.

    The cookie is ``Secure`` (the web tier is not in ``--dev``), which an
    HTTP client keeps from a plain-HTTP server: it is carried by hand.
    """
    with httpx.Client(base_url=url, follow_redirects=False, timeout=30) as client:
        form = client.get("/signin")
        cookie = _cookie_pair(form.headers.get_list("set-cookie"))
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', form.text)
        if csrf is None:
            raise RuntimeError("the sign-in page carries no CSRF token")
        reply = client.post(
            "/signin",
            data={
                "username": VIEWER,
                "password": VIEWER_PASSWORD,
                "next": "/",
                "_csrf": csrf.group(1),
            },
            headers={"Cookie": cookie},
        )
        if reply.status_code != 303:
            raise RuntimeError(f"sign-in answered {reply.status_code}: {reply.text[:500]}")
        return _cookie_pair(reply.headers.get_list("set-cookie")) or cookie


def _cookie_pair(set_cookies: list[str]) -> str:
    """``name=value`` of the session cookie among Set-Cookie headers ("" if none)."""
    for header in set_cookies:
        pair = header.split(";", 1)[0]
        if "bugless" in pair.split("=", 1)[0]:
            return pair
    return ""


def _check_pages(url: str, cookie: str, issue_id: int) -> dict[str, int]:
    """Load both pages once; their sizes. Fails unless signed in and complete."""
    sizes: dict[str, int] = {}
    with httpx.Client(base_url=url, headers={"Cookie": cookie}, timeout=60) as client:
        for name, path in (("list", LIST_PATH), ("issue", f"/issues/{issue_id}")):
            reply = client.get(path)
            if reply.status_code != 200:
                raise RuntimeError(f"{path}: {reply.status_code} {reply.text[:300]}")
            sizes[name] = len(reply.content)
        rows = len(set(re.findall(r'href="/issues/(\d+)"', client.get(LIST_PATH).text)))
        if rows < 50:
            raise RuntimeError(f"the list page links {rows} issues, not 50")
        if "User 0" not in client.get(f"/issues/{issue_id}").text:
            raise RuntimeError("the issue page shows no joined display names")
    return sizes


def _rows_tag(url: str, cookie: str, path: str) -> str:
    """The ETag of the hotlist's rows as the viewer's page drew them (what it polls with)."""
    with httpx.Client(base_url=url, headers={"Cookie": cookie}, timeout=60) as client:
        reply = client.get(path)
        tag = str(reply.headers.get("etag", ""))
        again = client.get(path, headers={"If-None-Match": tag})
    rows = reply.text.count('<tr class="row')
    if reply.status_code != 200 or rows != HOTLIST_ITEMS:
        raise RuntimeError(f"{path}: {reply.status_code}, {rows} rows, not {HOTLIST_ITEMS}")
    if again.status_code != 304:
        raise RuntimeError(f"{path} with its own ETag answered {again.status_code}, not 304")
    return tag


def calls_per_page(before: dict[str, float], after: dict[str, float], pages: int) -> str:
    """``model.SearchIssues 1.00 ...``: the backend calls one page made, on average."""
    diff = {k: after[k] - before.get(k, 0.0) for k in after}
    shown = sorted((k, v / max(1, pages)) for k, v in diff.items() if v > 0)
    total = sum(v for _, v in shown)
    return f"{total:.2f} calls/page: " + ", ".join(f"{k} {v:.2f}" for k, v in shown)


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _wrk_figure(pattern: str, out: str) -> str:
    """The first group of ``pattern`` in wrk's report; a clear error when wrk changed it."""
    match = re.search(pattern, out)
    if match is None:
        msg = f"wrk's report has no {pattern!r}:\n{out}"
        raise RuntimeError(msg)
    return match.group(1)


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_wrk(
    url: str, cookie: str, connections: int, seconds: float, headers: tuple[str, ...] = ()
) -> WrkResult:
    """One wrk run (``headers``: more ``Name: value`` request headers); parse its report."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed: apt-get install wrk")
    threads = min(connections, 2)
    completed = subprocess.run(
        [
            wrk,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{int(seconds)}s",
            "--latency",
            "--timeout",
            "30s",
            "-H",
            f"Cookie: {cookie}",
            *itertools.chain.from_iterable(("-H", h) for h in headers),
            url,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    out = completed.stdout
    rate = float(_wrk_figure(r"Requests/sec:\s+([\d.]+)", out))
    p50 = _ms(_wrk_figure(r"\s50%\s+(\S+)", out))
    p99 = _ms(_wrk_figure(r"\s99%\s+(\S+)", out))
    requests = int(_wrk_figure(r"(\d+) requests in", out))
    bad_match = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    bad = int(bad_match.group(1)) if bad_match else 0
    if errors:
        bad += sum(int(g) for g in errors.groups())
    return WrkResult(rate, p50, p99, requests, bad, load_average())


def run(
    issues: int,
    seconds: float,
    repeat: int,
    profile_seconds: float,
    connections: tuple[int, ...],
    *,
    configs: dict[str, str] | None = None,
    profile_dir: Path | None = None,
    measured: tuple[str, ...] = ("list", "issue"),
) -> None:
    """Start everything, measure, profile, stop everything.

    ``configs`` (label to ``bugless web serve`` flags): one web frontend each,
    on the same Model and Authenticator, measured in turn in the same run, so
    that a noisy machine affects them alike.
    """
    configs = configs or {"web": ""}
    bench = BenchStack.start(extra_env=METRICS_ENV)
    try:
        started = time.perf_counter()
        issue_id, hotlist_id = asyncio.run(_prepare(bench, issues))
        print(f"prepared in {time.perf_counter() - started:.0f} s", flush=True)
        urls = {label: _start_web(bench, flags) for label, flags in configs.items()}
        cookies = {label: _sign_in(url) for label, url in urls.items()}
        first = next(iter(urls))
        sizes = _check_pages(urls[first], cookies[first], issue_id)
        print(
            f"list page {sizes['list']:,} bytes (50 rows); issue {issue_id} page "
            f"{sizes['issue']:,} bytes ({HISTORY_ENTRIES} entries)",
            flush=True,
        )
        print(
            f"\n{'config':<10} {'page':<6} {'conn':>4} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'bad':>4} {'load':>5}  CPU ms/request by service",
            flush=True,
        )
        paths = {
            "list": LIST_PATH,
            "issue": f"/issues/{issue_id}",
            "hotlist": f"/hotlists/{hotlist_id}",
            "rows": f"/hotlists/{hotlist_id}/rows",
            "rows304": f"/hotlists/{hotlist_id}/rows",
        }
        tags = {
            label: _rows_tag(url, cookies[label], paths["rows"]) if "rows304" in measured else ""
            for label, url in urls.items()
        }
        for round_ in range(repeat):
            configs_now = list(urls.items())[:: -1 if round_ % 2 else 1]
            for (label, url), name in itertools.product(configs_now, measured):
                page = f"{url}{paths[name]}"
                cookie = cookies[label]
                sent = (f"If-None-Match: {tags[label]}",) if name == "rows304" else ()
                for count in connections:
                    meter = CpuMeter(bench.service_pids())
                    calls = grpc_calls(bench.stack)
                    meter.start()
                    result = run_wrk(page, cookie, count, seconds, sent)
                    cpu = meter.stop()
                    asked = calls_per_page(calls, grpc_calls(bench.stack), result.requests)
                    done = max(1, result.requests)
                    per_request = "  ".join(
                        f"{k} {v * 1000 / done:.2f}" for k, v in cpu.items() if v > 0.005
                    )
                    print(
                        f"{label:<10} {name:<6} {count:>4} {result.rate:>7.1f} "
                        f"{result.p50_ms:>8.1f} {result.p99_ms:>8.1f} {result.bad:>4} "
                        f"{result.load:>5}  {per_request}\n{'':<12}{asked}",
                        flush=True,
                    )
        if profile_seconds > 0:
            pages = {
                "list": f"{urls[first]}{LIST_PATH}",
                "issue": f"{urls[first]}/issues/{issue_id}",
            }
            _profile(
                bench, pages, cookies[first], profile_seconds, max(connections), keep=profile_dir
            )
    finally:
        bench.stop()


def _profile(
    bench: BenchStack,
    pages: dict[str, str],
    cookie: str,
    seconds: float,
    connections: int,
    *,
    keep: Path | None = None,
) -> None:
    pids = bench.service_pids()
    for name, page in pages.items():
        outputs: dict[str, Path] = {
            service: bench.directory / f"profile-{name}-{service}.txt"
            for service in ("web", "model")
        }
        spies: list[Any] = [profile(pids[s], seconds, p) for s, p in outputs.items()]
        # perf as well: py-spy cannot see the cyclic collector or TLS, and
        # charges a preempted process's wait to the frame that ran last.
        native = bench.directory / f"perf-{name}-web.data"
        if shutil.which("perf"):
            spies.append(perf_record(pids["web"], seconds, native))
        result = run_wrk(page, cookie, connections, seconds + 1)
        for spy in spies:
            spy.wait(timeout=seconds + 60)
        print(
            f"\npy-spy, {name} page with {connections} connections "
            f"({result.rate:.1f} req/s under the profiler, load {result.load}):"
        )
        for service, path in outputs.items():
            print(f" {service}:")
            print(summarize_profile(path) if path.exists() else "  (no profile written)")
            if service == "web" and native.exists():
                print(" web, native (perf: on-CPU only, by library and by symbol):")
                print(perf_summary(native, top=12))
            if keep is not None and path.exists():
                keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, keep / path.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10.0, help="wrk duration per row")
    parser.add_argument("--repeat", type=int, default=2, help="rounds of every measurement")
    parser.add_argument("--profile-seconds", type=float, default=15.0, help="0: no profile")
    parser.add_argument("--connections", default="1,32", help="wrk connections, comma-separated")
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="LABEL=FLAGS",
        help="a web frontend to measure, with these serve flags (repeatable; side by side), "
        "e.g. 'nocache=--hotlist-cache-seconds 0' 'workers2=--workers 2'; NAME=VALUE words "
        "are its environment ('before=PYTHONPATH=<an older checkout>/packages/bugless-web/src')",
    )
    parser.add_argument(
        "--pages",
        default="list,issue",
        help=f"pages measured, comma-separated, of {', '.join(PAGES)}",
    )
    parser.add_argument(
        "--profile-dir",
        type=Path,
        default=None,
        help="keep py-spy's raw profiles here (collapsed stacks, one file per page and service)",
    )
    args = parser.parse_args()
    connections = tuple(int(c) for c in args.connections.split(","))
    configs = dict(c.partition("=")[::2] for c in args.config)
    measured = tuple(args.pages.split(","))
    unknown = sorted(set(measured) - set(PAGES))
    if unknown:
        parser.error(f"--pages: no page {', '.join(unknown)}; pages are {', '.join(PAGES)}")
    run(
        args.issues,
        args.seconds,
        args.repeat,
        args.profile_seconds,
        connections,
        configs=configs,
        profile_dir=args.profile_dir,
        measured=measured,
    )


if __name__ == "__main__":
    main()
