"""Contract: concurrent writers never lose or duplicate a change."""

from __future__ import annotations

import asyncio
import random

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from bugless_core.errors import IssueVersionConflict, from_grpc_error
from bugless_proto import v1
from bugless_testing.model_contracts._support import (
    ALICE,
    Changed,
    change,
    delta,
    get_issue,
    history,
    make_component,
    make_issue,
    render_issue,
    replay,
)

WRITERS = 50


async def _try(
    model: v1.ModelStub, issue: v1.Issue, n: int, *, caller: v1.Caller = ALICE
) -> Changed | IssueVersionConflict:
    try:
        return await change(
            model, issue, delta(cc_add=[f"writer{n}"]), comment=f"writer {n}", caller=caller
        )
    except GRPCError as exc:
        if exc.status is not Status.ABORTED:
            raise
        conflict = from_grpc_error(exc)
    if not isinstance(conflict, IssueVersionConflict):
        raise AssertionError(f"ABORTED without a version conflict: {conflict}")
    return conflict


class ConcurrencyContract:
    """Optimistic concurrency under real contention.

    Pins down: of many writers racing on one version, each either succeeds or
    gets ABORTED (with the version it lost to), exactly one wins per version;
    writers that re-read and retry all get through; every acknowledged change is
    in the history exactly once and no rejected one is; version equals the
    number of entries; and relation changes racing on one shared other side
    keep its version and history consistent.
    """

    async def test_writers_on_one_version_one_wins_the_rest_are_aborted(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        outcomes = await asyncio.gather(*(_try(model, issue, n) for n in range(WRITERS)))
        winners = [o for o in outcomes if isinstance(o, Changed)]
        losers = [o for o in outcomes if isinstance(o, IssueVersionConflict)]
        assert len(winners) == 1
        assert len(losers) == WRITERS - 1
        assert all(c.current_version == 2 and c.expected_version == 1 for c in losers)
        entries = await history(model, issue.id)
        assert len(entries) == 2
        assert entries[1].comment == winners[0].entry.comment
        now = await get_issue(model, issue.id)
        assert now.version == 2
        assert now.cc == winners[0].issue.cc

    async def test_retrying_writers_all_get_through_and_nothing_is_lost(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        acknowledged: list[Changed] = []
        rejected = 0
        writers = 20

        async def writer(n: int) -> None:
            nonlocal rejected
            seen = issue
            for _ in range(200):
                outcome = await _try(model, seen, n)
                if isinstance(outcome, Changed):
                    acknowledged.append(outcome)
                    return
                rejected += 1
                await asyncio.sleep(random.random() / 100)
                seen = await get_issue(model, issue.id)
            raise AssertionError(f"writer {n} never got through")

        await asyncio.gather(*(writer(n) for n in range(writers)))
        assert len(acknowledged) == writers
        entries = await history(model, issue.id)
        assert len(entries) == writers + 1
        assert [e.version for e in entries] == list(range(1, writers + 2))
        comments = [e.comment for e in entries[1:]]
        assert sorted(comments) == sorted(f"writer {n}" for n in range(writers))
        assert sorted(a.entry.version for a in acknowledged) == list(range(2, writers + 2))
        for ack in acknowledged:
            assert entries[ack.entry.version - 1] == ack.entry
        now = await get_issue(model, issue.id)
        assert now.version == len(entries)
        assert now.cc == sorted(f"writer{n}" for n in range(writers))
        assert replay(entries) == render_issue(now)

    async def test_versions_and_history_agree_after_mixed_races(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        outcomes: list[Changed | IssueVersionConflict] = []
        for _ in range(3):
            current = await get_issue(model, issue.id)
            outcomes += await asyncio.gather(
                *(_try(model, current, n) for n in range(WRITERS // 3))
            )
        acknowledged = [o for o in outcomes if isinstance(o, Changed)]
        entries = await history(model, issue.id)
        assert len(entries) == 1 + len(acknowledged) == 4
        assert {e.comment for e in entries[1:]} == {a.entry.comment for a in acknowledged}

    async def test_relations_racing_on_one_other_side_are_all_recorded(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        target = await make_issue(model, comp.id)
        blockers = [await make_issue(model, comp.id) for _ in range(10)]
        results = await asyncio.gather(
            *(change(model, b, delta(blocking_add=[target.id])) for b in blockers),
            return_exceptions=True,
        )
        committed = [b for b, r in zip(blockers, results, strict=True) if isinstance(r, Changed)]
        for result in results:
            if not isinstance(result, Changed):
                assert isinstance(result, GRPCError), result
                # Each change names its own issue's version, so the shared other side
                # may not cause ABORTED; only "could not commit after retries" is allowed.
                assert result.status is Status.UNAVAILABLE, result
        assert committed, "at least one of ten independent changes commits"
        now = await get_issue(model, target.id)
        entries = await history(model, target.id)
        assert now.blocked_by_ids == sorted(b.id for b in committed)
        assert now.version == len(entries) == 1 + len(committed)
        assert sorted(e.caused_by_issue_id for e in entries[1:]) == sorted(b.id for b in committed)
        assert replay(entries) == render_issue(now)
