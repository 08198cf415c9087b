"""A resumed Watch catching up: changes/s and CPU per change, old and new code side by side.

    python -m bench.watch_replay [--issues 2000] [--changes 5000] [--rounds 4] \
        [--before PATH[:PATH...]]

Starts a throwaway PostgreSQL, seeds it (:mod:`bench.seed`) and runs the
Authenticator and the Model as ``bugless ... serve`` subprocesses
(:mod:`bench._services`). It then makes ``--changes`` changes (a comment
each, by 8 writers on issues of open components, as ``user0042``): what a
script watching a query finds after a weekend away. Each round resumes a
query watch (every issue: ``id >= 1``, as ``user0042`` in group ``eng``, so
each change's issue passes the visibility check and the query) from the
position before those changes, over mutual TLS, and reads until the last
change's event: the replay, timed, with the CPU of the Model measured and
of PostgreSQL (its postmaster and backends) from /proc.

With ``--before`` (the ``packages/*/src`` of an older checkout, as a
``PYTHONPATH``), a second Model (``model-before``) runs that code on the
same database, and each round replays on both, one after the other (which
goes first alternates), so the machine's load falls on both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import asyncpg

from bench._model_reads import model_stub
from bench._services import BenchStack, CpuMeter, load_average
from bench.seed import SeedOptions, seed_and_verify
from bugless_core.search.build import term
from bugless_proto import v1

CALLER_ID = "user0042"
CALLER = v1.Caller(user_id=CALLER_ID, groups=["eng"])
#: Writers making the changes at once (each on issues of its own).
WRITERS = 8
QUERY = v1.StructuredQuery(filter=term(v1.SearchField.ID, v1.SearchOperator.GE, 1))


async def _open_issue_ids(url: str, limit: int) -> list[int]:
    """Issues of open components (every caller may change them), in id order."""
    conn = await asyncpg.connect(url, server_settings={"search_path": "bugless"})
    try:
        rows = await conn.fetch(
            "SELECT i.id FROM issues i JOIN components c ON c.id = i.component_id"
            " WHERE c.effective_acl = '{}'::jsonb ORDER BY i.id LIMIT $1",
            limit,
        )
    finally:
        await conn.close()
    return [r["id"] for r in rows]


async def _head(stub: v1.ModelStub) -> int:
    answer = await stub.read_feed(v1.ReadFeedRequest(caller=CALLER, head_only=True))
    return answer.head_position


async def _make_changes(params: dict[str, Any], ids: list[int], count: int) -> tuple[int, int]:
    """``count`` comments by :data:`WRITERS` writers; the positions before and after."""
    channel, stub = model_stub(params)
    try:
        start = await _head(stub)

        async def writer(n: int) -> None:
            own = ids[n::WRITERS]
            versions = {
                i.id: i.version
                for i in (
                    await stub.batch_get_issues(
                        v1.BatchGetIssuesRequest(caller=CALLER, issue_ids=own)
                    )
                ).issues
            }
            for k in range(n, count, WRITERS):
                issue_id = own[(k // WRITERS) % len(own)]
                reply = await stub.change_issue(
                    v1.ChangeIssueRequest(
                        caller=CALLER,
                        issue_id=issue_id,
                        expected_version=versions[issue_id],
                        comment=f"change {k} while the watcher was away",
                    )
                )
                assert reply.issue is not None
                versions[issue_id] = reply.issue.version

        await asyncio.gather(*(writer(n) for n in range(WRITERS)))
        return start, await _head(stub)
    finally:
        channel.close()


async def _replay(params: dict[str, Any], start: int, last: int) -> tuple[int, float]:
    """Resume a query watch at ``start``; read until the event of ``last``: (events, seconds)."""
    channel, stub = model_stub(params)
    events = 0
    try:
        began = time.perf_counter()
        request = v1.WatchRequest(caller=CALLER, query=QUERY, after_position=start)
        async for event in stub.watch(request, timeout=3600):
            if event.subscribed:
                continue
            events += 1
            if event.position >= last:
                break
        seconds = time.perf_counter() - began
    finally:
        channel.close()
    return events, seconds


def run(issues: int, changes: int, rounds: int, before: str) -> None:
    """Start everything, make the changes, replay them on each Model in turn, stop everything."""
    bench = BenchStack.start()
    try:
        print(f"seeding {issues:,} issues ...", flush=True)
        url = bench.stack.model_database_url
        asyncio.run(seed_and_verify(url, "bugless", SeedOptions(issues=issues), check=False))
        ids = asyncio.run(_open_issue_ids(url, 4000))
        models = bench.models_before_after(before)
        pids = bench.service_pids()
        params: dict[str, Any] = {
            **bench.model_call_params(CALLER_ID, CALLER.groups),
            "model_port": models["after"].port,
        }
        print(f"making {changes:,} changes on {len(ids)} issues ...", flush=True)
        made = time.perf_counter()
        start, last = asyncio.run(_make_changes(params, ids, changes))
        print(f"positions {start + 1}..{last} in {time.perf_counter() - made:.1f} s", flush=True)
        print(f"{'model':<7} {'events':>7} {'s':>7} {'changes/s':>10} {'load':>5}  CPU ms/change")
        for round_number in range(rounds):
            order = list(models.items())
            for label, model in order if round_number % 2 == 0 else order[::-1]:
                name = "model" if label == "after" else "model-before"
                meter = CpuMeter({name: pids[name], "postgres": pids["postgres"]})
                meter.start()
                events, seconds = asyncio.run(
                    _replay({**params, "model_port": model.port}, start, last)
                )
                cpu = meter.stop()
                walked = last - start
                per = "  ".join(f"{n} {s * 1000 / walked:.3f}" for n, s in cpu.items())
                print(
                    f"{label:<7} {events:>7} {seconds:>7.2f} {walked / seconds:>10.0f} "
                    f"{load_average():>5}  {per}",
                    flush=True,
                )
            print(f"-- end of round {round_number + 1}", flush=True)
    finally:
        bench.stop()


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=2000)
    parser.add_argument("--changes", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument(
        "--before", default="", help="PYTHONPATH of an older checkout's packages/*/src"
    )
    args = parser.parse_args()
    run(args.issues, args.changes, args.rounds, args.before)


if __name__ == "__main__":
    main()
