"""Contract: the change feed (capability ``change_feed``)."""

from __future__ import annotations

import asyncio
import random

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from bugless_core.model.backend import Capability
from bugless_proto import v1
from bugless_testing.model_contracts._support import (
    ADMIN,
    ALICE,
    BOB,
    change,
    delta,
    expect_error,
    get_issue,
    make_component,
    make_issue,
    user_entry,
)
from bugless_testing.plugin import requires_capability

#: Concurrent writers, issues they share and changes each makes.
WRITERS = 12
ISSUES = 4
CHANGES_PER_WRITER = 6


async def _head(model: v1.ModelStub) -> int:
    answer = await model.read_feed(v1.ReadFeedRequest(caller=ADMIN, head_only=True))
    return answer.head_position


async def _read_all(
    model: v1.ModelStub, after: int, caller: v1.Caller = ADMIN
) -> tuple[list[v1.FeedChange], int]:
    """Every change after ``after`` up to the head; positions checked dense."""
    changes: list[v1.FeedChange] = []
    while True:
        answer = await model.read_feed(
            v1.ReadFeedRequest(caller=caller, after_position=after, max_changes=50)
        )
        for item in answer.changes:
            assert item.position == after + 1, f"gap or repeat after {after}: {item.position}"
            after = item.position
        changes.extend(answer.changes)
        if not answer.changes:
            assert after == answer.head_position
            return changes, after


def _entries(changes: list[v1.FeedChange]) -> list[tuple[int, int]]:
    return [(e.issue_id, e.version) for c in changes for e in c.entries]


async def _change_retrying(model: v1.ModelStub, issue_id: int, text: str) -> None:
    """One comment on ``issue_id``, re-reading after every lost race."""
    while True:
        issue = await get_issue(model, issue_id)
        try:
            await change(model, issue, comment=text)
        except GRPCError as exc:
            if exc.status is not Status.ABORTED:
                raise
            await asyncio.sleep(random.uniform(0, 0.01))
        else:
            return


@requires_capability(Capability.CHANGE_FEED)
class FeedContract:
    """ReadFeed: every committed change once, in commit order, resumable.

    Pins down: each write transaction is one change at the next position
    (dense: no gaps, no repeats) naming the history entries it wrote and who
    wrote them; a consumer resuming after a position gets exactly the later
    changes; under many concurrent writers (issue creations and changes
    committing out of id order) a consumer reading *while they write* still
    sees every acknowledged entry exactly once, each issue's versions in
    order; failed writes leave no trace; a non-admin reader is never told
    about issues it may not view; ``wait_ms`` returns a change committed while
    waiting; and bad positions are refused with the reason.
    """

    async def test_each_write_is_one_change_at_the_next_position(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        head = await _head(model)
        issue = await make_issue(model, comp.id)
        changed = await change(model, issue, delta(priority=v1.Priority.P1), comment="c")
        await expect_error(change(model, issue, comment="stale"), Status.ABORTED)
        changes, _ = await _read_all(model, head)
        mine = [c for c in changes if any(e.issue_id == issue.id for e in c.entries)]
        assert [(c.author, _entries([c])) for c in mine] == [
            (ALICE.user_id, [(issue.id, 1)]),
            (ALICE.user_id, [(issue.id, changed.issue.version)]),
        ]
        assert mine[0].committed_at is not None

    async def test_a_batch_create_is_one_change_naming_each_new_issue(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        head = await _head(model)
        items = [
            v1.CreateIssueRequest(fields=v1.IssueFields(title=f"fed {n}", component_id=comp.id))
            for n in range(3)
        ]
        items.insert(1, v1.CreateIssueRequest(fields=v1.IssueFields(component_id=comp.id)))
        reply = await model.batch_create_issues(
            v1.BatchCreateIssuesRequest(caller=ALICE, items=items)
        )
        ids = [r.issue.id for r in reply.results if r.issue is not None]
        assert len(ids) == 3  # the item without a title wrote nothing
        changes, _ = await _read_all(model, head)
        mine = [c for c in changes if any(e.issue_id in ids for e in c.entries)]
        assert [(c.author, _entries([c])) for c in mine] == [(ALICE.user_id, [(i, 1) for i in ids])]

    async def test_concurrent_creates_are_each_one_change_in_commit_order(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        head = await _head(model)
        made = await asyncio.gather(*(make_issue(model, comp.id) for _ in range(WRITERS)))
        changes, _ = await _read_all(model, head)  # dense positions, checked there
        ids = {i.id for i in made}
        mine = [c for c in changes if any(e.issue_id in ids for e in c.entries)]
        assert sorted(e for c in mine for e in _entries([c])) == sorted((i, 1) for i in ids)
        assert all(len(c.entries) == 1 for c in mine)

    async def test_resuming_after_a_position_gets_only_later_changes(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        position = await _head(model)
        second = await change(model, issue, comment="after the cursor")
        changes, _ = await _read_all(model, position)
        assert (issue.id, second.issue.version) in _entries(changes)
        assert (issue.id, 1) not in _entries(changes)
        again, _ = await _read_all(model, position)
        assert _entries(again) == _entries(changes)

    async def test_component_changes_are_in_the_feed_for_admins(self, model: v1.ModelStub) -> None:
        head = await _head(model)
        comp = await make_component(model)
        changes, _ = await _read_all(model, head)
        assert any(comp.id in c.component_ids for c in changes)

    async def test_concurrent_writers_every_entry_once_in_order_while_being_read(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        start = await _head(model)
        issues = [await make_issue(model, comp.id) for _ in range(ISSUES)]
        created: list[int] = [i.id for i in issues]
        seen: list[tuple[int, int]] = []
        done = asyncio.Event()

        async def writer(n: int) -> None:
            for k in range(CHANGES_PER_WRITER):
                if k % 3 == 0:  # creations race for ids and commit out of id order
                    created.append((await make_issue(model, comp.id)).id)
                else:
                    await _change_retrying(model, random.choice(issues).id, f"w{n}.{k}")

        async def reader() -> None:
            position = start
            while True:
                finished = done.is_set()
                answer = await model.read_feed(
                    v1.ReadFeedRequest(
                        caller=ADMIN, after_position=position, max_changes=7, wait_ms=50
                    )
                )
                for item in answer.changes:
                    assert item.position == position + 1, f"gap after {position}"
                    position = item.position
                    seen.extend((e.issue_id, e.version) for e in item.entries)
                if finished and not answer.changes:
                    return

        reading = asyncio.ensure_future(reader())
        await asyncio.gather(*(writer(n) for n in range(WRITERS)))
        done.set()
        await asyncio.wait_for(reading, 60)

        mine = [(i, v) for i, v in seen if i in set(created)]
        assert len(mine) == len(set(mine)), "an entry was delivered twice"
        expected = set()
        for issue_id in created:
            current = await get_issue(model, issue_id)
            expected |= {(issue_id, v) for v in range(1, current.version + 1)}
        assert set(mine) == expected
        for issue_id in created:
            versions = [v for i, v in mine if i == issue_id]
            assert versions == sorted(versions), f"issue {issue_id} out of order: {versions}"

    async def test_a_reader_is_not_told_of_issues_it_may_not_view(
        self, model: v1.ModelStub
    ) -> None:
        hidden = await make_component(model, acl=[user_entry(ALICE.user_id, v1.Role.EDITOR)])
        shown = await make_component(model)
        head = await _head(model)
        secret = await make_issue(model, hidden.id)
        public = await make_issue(model, shown.id)
        changes, _ = await _read_all(model, head, caller=BOB)
        assert (public.id, 1) in _entries(changes)
        assert secret.id not in {i for i, _ in _entries(changes)}
        assert all(not c.component_ids for c in changes)
        everything, _ = await _read_all(model, head, caller=ALICE)
        assert (secret.id, 1) in _entries(everything)

    async def test_wait_returns_a_change_committed_while_waiting(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        head = await _head(model)
        waiting = asyncio.ensure_future(
            model.read_feed(v1.ReadFeedRequest(caller=ADMIN, after_position=head, wait_ms=20_000))
        )
        await asyncio.sleep(0.3)
        assert not waiting.done()
        second = await change(model, issue, comment="wake up")
        answer = await asyncio.wait_for(waiting, 15)
        assert (issue.id, second.issue.version) in _entries(list(answer.changes))

    async def test_bad_positions_and_sizes_are_refused(self, model: v1.ModelStub) -> None:
        head = await _head(model)
        await expect_error(
            model.read_feed(v1.ReadFeedRequest(caller=ADMIN, after_position=head + 1000)),
            Status.INVALID_ARGUMENT,
            "after_position",
        )
        await expect_error(
            model.read_feed(v1.ReadFeedRequest(caller=ADMIN, after_position=-1)),
            Status.INVALID_ARGUMENT,
            "after_position",
        )
        await expect_error(
            model.read_feed(v1.ReadFeedRequest(caller=ADMIN, max_changes=100_000)),
            Status.INVALID_ARGUMENT,
            "max_changes",
        )
        await expect_error(
            model.read_feed(v1.ReadFeedRequest(caller=ADMIN, wait_ms=-5)),
            Status.INVALID_ARGUMENT,
            "wait_ms",
        )
