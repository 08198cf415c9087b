"""Contract: the history of an issue, appended to by every write (redaction: ``_edits``)."""

from __future__ import annotations

from typing import Any

from grpclib.const import Status
from grpclib.exceptions import GRPCError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bugless_proto import v1
from bugless_testing.model_contracts._support import (
    ADMIN,
    ALICE,
    BOB,
    change,
    delta,
    expect_error,
    get_issue,
    history,
    make_component,
    make_hotlist,
    make_issue,
    render_issue,
    replay,
    user_entry,
)

_USERS = ["ann", "ben", "cat", "dan"]

#: One step of a random edit session: a delta's keyword arguments plus a comment.
_steps = st.tuples(
    st.fixed_dictionaries(
        {},
        optional={
            "title": st.sampled_from(["One", "Two", "Three"]),
            "status": st.sampled_from([s for s in v1.Status if s.value]),
            "priority": st.sampled_from([p for p in v1.Priority if p.value]),
            "severity": st.sampled_from([s for s in v1.Severity if s.value]),
            "issue_type": st.sampled_from([t for t in v1.IssueType if t.value]),
            "assignee": st.sampled_from(["", *_USERS]),
            "verifier": st.sampled_from(["", *_USERS]),
            "cc_add": st.lists(st.sampled_from(_USERS), unique=True, max_size=2),
            "cc_remove": st.lists(st.sampled_from(_USERS), unique=True, max_size=2),
            "relation": st.sampled_from(["blocking_add", "blocking_remove"]),
            "link": st.sampled_from(["parent_id", "duplicate_of_id"]),
            "hotlist": st.sampled_from(["hotlist_add", "hotlist_remove"]),
        },
    ),
    st.sampled_from(["", "", "a comment"]),
)


class HistoryContract:
    """ListHistory: entries oldest first, paged, appended to, and a faithful record.

    Pins down: versions 1..n in order, paging without repeats or gaps, entries
    that later changes and comments never alter (a redaction blanks text in
    place: the edits contract covers it), NOT_FOUND for invisible issues,
    foreign page tokens, and the central rule that replaying every entry from an empty
    issue yields exactly the issue's current fields, for any sequence of deltas.
    """

    async def test_entries_are_oldest_first_with_versions_one_to_n(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id, description="d")
        for n in range(4):
            issue = (await change(model, issue, comment=f"c{n}")).issue
        entries = await history(model, issue.id)
        assert [e.version for e in entries] == [1, 2, 3, 4, 5]
        assert [e.comment for e in entries] == ["d", "c0", "c1", "c2", "c3"]
        assert all(e.issue_id == issue.id for e in entries)
        times = [e.created_at for e in entries]
        assert all(t is not None for t in times)
        assert times == sorted(times)  # type: ignore[type-var]
        assert issue.version == len(entries)

    async def test_pages_cover_every_entry_once(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        for n in range(6):
            issue = (await change(model, issue, comment=f"c{n}")).issue
        whole = await history(model, issue.id)
        for size in (1, 2, 3, 7):
            paged = await history(model, issue.id, page_size=size)
            assert paged == whole

    async def test_last_page_has_an_empty_token(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        issue = (await change(model, issue, comment="x")).issue
        first = await model.list_history(
            v1.ListHistoryRequest(caller=ALICE, issue_id=issue.id, page=v1.PageRequest(page_size=1))
        )
        assert len(first.entries) == 1
        assert first.next_page_token
        second = await model.list_history(
            v1.ListHistoryRequest(
                caller=ALICE,
                issue_id=issue.id,
                page=v1.PageRequest(page_size=1, page_token=first.next_page_token),
            )
        )
        assert [e.version for e in second.entries] == [2]
        exact = await model.list_history(
            v1.ListHistoryRequest(caller=ALICE, issue_id=issue.id, page=v1.PageRequest(page_size=2))
        )
        assert len(exact.entries) == 2
        if exact.next_page_token:
            rest = await model.list_history(
                v1.ListHistoryRequest(
                    caller=ALICE,
                    issue_id=issue.id,
                    page=v1.PageRequest(page_size=2, page_token=exact.next_page_token),
                )
            )
            assert rest.entries == []
            assert rest.next_page_token == ""

    async def test_entries_never_change_after_later_changes(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id, description="d")
        issue = (await change(model, issue, delta(title="t2"), comment="x")).issue
        before = await history(model, issue.id)
        issue = (await change(model, issue, delta(title="t3"), comment="y")).issue
        await change(model, issue, delta(priority=v1.Priority.P0))
        after = await history(model, issue.id)
        assert after[: len(before)] == before

    async def test_history_of_invisible_issue_is_not_found(self, model: v1.ModelStub) -> None:
        hidden = await make_component(model, acl=[user_entry("carol", v1.Role.ADMIN)])
        issue = await make_issue(model, hidden.id, caller=ADMIN)
        await expect_error(
            model.list_history(v1.ListHistoryRequest(caller=BOB, issue_id=issue.id)),
            Status.NOT_FOUND,
            f"issue {issue.id} not found",
        )

    async def test_page_token_of_another_issue_is_invalid(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        a = await make_issue(model, comp.id, description="d")
        b = await make_issue(model, comp.id, description="d")
        a = (await change(model, a, comment="more")).issue
        b = (await change(model, b, comment="more")).issue
        page = await model.list_history(
            v1.ListHistoryRequest(caller=ALICE, issue_id=a.id, page=v1.PageRequest(page_size=1))
        )
        assert page.next_page_token
        await expect_error(
            model.list_history(
                v1.ListHistoryRequest(
                    caller=ALICE,
                    issue_id=b.id,
                    page=v1.PageRequest(page_size=1, page_token=page.next_page_token),
                )
            ),
            Status.INVALID_ARGUMENT,
            "page_token",
        )

    async def test_replay_of_a_fixed_session_equals_state(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        other = await make_component(model)
        hot = await make_hotlist(model, caller=ALICE)
        peer = await make_issue(model, comp.id)
        parent = await make_issue(model, comp.id)
        issue = await make_issue(
            model, comp.id, cc=["ann"], assignee="ben", blocking_ids=[peer.id], description="x"
        )
        steps = [
            delta(status=v1.Status.FIXED, cc_add=["cat"]),
            delta(component_id=other.id, parent_id=parent.id, hotlist_add=[hot.id]),
            delta(blocking_remove=[peer.id], blocked_by_add=[peer.id], assignee=""),
            delta(status=v1.Status.NEW, cc_remove=["ann"], title="final"),
        ]
        for step in steps:
            issue = (await change(model, issue, step)).issue
        for subject in (issue.id, peer.id):
            now = await get_issue(model, subject, caller=ALICE)
            entries = await history(model, subject, caller=ALICE)
            assert replay(entries) == render_issue(now)
            assert now.version == len(entries)

    @settings(
        max_examples=8,
        deadline=None,
        # differing_executors: every backend runs this through its own one-line
        # subclass, so one run over several backends' tests calls it on several
        # classes; the examples depend only on the ``model`` fixture, not on them.
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.differing_executors,
        ],
    )
    @given(session=st.lists(_steps, min_size=1, max_size=6))
    async def test_replay_of_any_delta_sequence_equals_state(
        self, model: v1.ModelStub, session: list[tuple[dict[str, Any], str]]
    ) -> None:
        comp = await make_component(model)
        hot = await make_hotlist(model, caller=ALICE)
        peer = await make_issue(model, comp.id)
        issue = await make_issue(model, comp.id)
        for kwargs, comment in session:
            args = dict(kwargs)
            relation = args.pop("relation", None)
            link = args.pop("link", None)
            membership = args.pop("hotlist", None)
            added = args.get("cc_add", [])
            args["cc_remove"] = [u for u in args.get("cc_remove", []) if u not in added]
            if relation is not None:
                args[relation] = [peer.id]
            if link is not None:
                args[link] = peer.id if getattr(issue, link) == 0 else 0
            if membership is not None:
                args[membership] = [hot.id]
            refusal: GRPCError | None = None
            try:
                issue = (await change(model, issue, delta(**args), comment=comment)).issue
            except GRPCError as exc:
                refusal = exc
            if refusal is not None:  # an empty change is the only refusal allowed here
                assert refusal.status is Status.INVALID_ARGUMENT, refusal
                assert "the change is empty" in (refusal.message or ""), refusal
                assert not comment
        for subject in (issue.id, peer.id):
            now = await get_issue(model, subject, caller=ALICE)
            entries = await history(model, subject, caller=ALICE)
            assert replay(entries) == render_issue(now)
            assert now.version == len(entries)
            assert now.comment_count == sum(1 for e in entries if e.comment)
