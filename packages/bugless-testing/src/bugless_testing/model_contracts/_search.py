"""Contract: what a structured query matches."""

from __future__ import annotations

import datetime
from collections.abc import Callable

import pytest
from grpclib.client import Channel

from bugless_core.issue_fields import OPEN_STATUSES
from bugless_core.search.build import all_of, any_of, negate, term
from bugless_core.search.enum_values import level_of
from bugless_proto import v1
from bugless_testing.model_contracts._search_world import SearchWorld, build_search_world
from bugless_testing.model_contracts._support import (
    ADMIN,
    eq,
    make_component,
    make_issue,
    search_page,
    within,
)

F = v1.SearchField
Op = v1.SearchOperator
NodeOf = Callable[[SearchWorld], v1.SearchNode]
Matches = Callable[[SearchWorld, v1.Issue], bool]


def _p(issue: v1.Issue) -> int:
    """Priority as the query language numbers it (P0 = 0)."""
    return level_of(issue.priority)


def _s(issue: v1.Issue) -> int:
    return level_of(issue.severity)


def _created(w: SearchWorld, name: str) -> datetime.datetime:
    at = w.issues[name].created_at
    assert at is not None
    return at


def _modified(w: SearchWorld, name: str) -> datetime.datetime:
    at = w.issues[name].modified_at
    assert at is not None
    return at


def _case(node: NodeOf, matches: Matches, name: str) -> object:
    return pytest.param(node, matches, id=name)


#: Field terms: the query, and the rule deciding which issues it matches.
FIELD_CASES = [
    _case(lambda w: eq(F.STATUS, "FIXED"), lambda w, i: i.status == v1.Status.FIXED, "status"),
    _case(
        lambda w: eq(F.STATUS, "NEW", "ACCEPTED"),
        lambda w, i: i.status in {v1.Status.NEW, v1.Status.ACCEPTED},
        "status-list",
    ),
    _case(lambda w: eq(F.STATUS_CLASS, "open"), lambda w, i: i.status in OPEN_STATUSES, "is-open"),
    _case(
        lambda w: eq(F.STATUS_CLASS, "closed"),
        lambda w, i: i.status not in OPEN_STATUSES,
        "is-closed",
    ),
    _case(
        lambda w: eq(F.ASSIGNEE, w.ub.user_id),
        lambda w, i: i.assignee == w.ub.user_id,
        "assignee",
    ),
    _case(
        lambda w: eq(F.ASSIGNEE, w.ua.user_id, w.uc.user_id),
        lambda w, i: i.assignee in {w.ua.user_id, w.uc.user_id},
        "assignee-list",
    ),
    _case(lambda w: term(F.ASSIGNEE, Op.NONE), lambda w, i: not i.assignee, "assignee-none"),
    _case(lambda w: term(F.ASSIGNEE, Op.ANY), lambda w, i: bool(i.assignee), "assignee-any"),
    _case(
        lambda w: eq(F.REPORTER, w.ua.user_id),
        lambda w, i: i.reporter == w.ua.user_id,
        "reporter",
    ),
    _case(
        lambda w: eq(F.REPORTER, w.ub.user_id, w.uc.user_id),
        lambda w, i: i.reporter in {w.ub.user_id, w.uc.user_id},
        "reporter-list",
    ),
    _case(lambda w: eq(F.CC, w.ub.user_id), lambda w, i: w.ub.user_id in i.cc, "cc"),
    _case(
        lambda w: eq(F.CC, w.ua.user_id, w.ub.user_id),
        lambda w, i: bool({w.ua.user_id, w.ub.user_id} & set(i.cc)),
        "cc-list",
    ),
    _case(lambda w: term(F.CC, Op.NONE), lambda w, i: not i.cc, "cc-none"),
    _case(lambda w: term(F.CC, Op.ANY), lambda w, i: bool(i.cc), "cc-any"),
    _case(
        lambda w: eq(F.VERIFIER, w.uc.user_id),
        lambda w, i: i.verifier == w.uc.user_id,
        "verifier",
    ),
    _case(lambda w: term(F.VERIFIER, Op.NONE), lambda w, i: not i.verifier, "verifier-none"),
    _case(lambda w: term(F.VERIFIER, Op.ANY), lambda w, i: bool(i.verifier), "verifier-any"),
    _case(lambda w: eq(F.PRIORITY, 0), lambda w, i: _p(i) == 0, "priority"),
    _case(lambda w: eq(F.PRIORITY, 0, 1), lambda w, i: _p(i) in {0, 1}, "priority-list"),
    _case(lambda w: term(F.PRIORITY, Op.LT, 2), lambda w, i: _p(i) < 2, "priority-lt"),
    _case(lambda w: term(F.PRIORITY, Op.LE, 2), lambda w, i: _p(i) <= 2, "priority-le"),
    _case(lambda w: term(F.PRIORITY, Op.GT, 2), lambda w, i: _p(i) > 2, "priority-gt"),
    _case(lambda w: term(F.PRIORITY, Op.GE, 1), lambda w, i: _p(i) >= 1, "priority-ge"),
    _case(lambda w: eq(F.SEVERITY, 0), lambda w, i: _s(i) == 0, "severity"),
    _case(lambda w: eq(F.SEVERITY, 1, 4), lambda w, i: _s(i) in {1, 4}, "severity-list"),
    _case(lambda w: term(F.SEVERITY, Op.LT, 2), lambda w, i: _s(i) < 2, "severity-lt"),
    _case(lambda w: term(F.SEVERITY, Op.LE, 2), lambda w, i: _s(i) <= 2, "severity-le"),
    _case(lambda w: term(F.SEVERITY, Op.GT, 2), lambda w, i: _s(i) > 2, "severity-gt"),
    _case(lambda w: term(F.SEVERITY, Op.GE, 3), lambda w, i: _s(i) >= 3, "severity-ge"),
    _case(lambda w: eq(F.TYPE, "BUG"), lambda w, i: i.type == v1.IssueType.BUG, "type"),
    _case(
        lambda w: eq(F.TYPE, "TASK", "VULNERABILITY"),
        lambda w, i: i.type in {v1.IssueType.TASK, v1.IssueType.VULNERABILITY},
        "type-list",
    ),
    _case(
        lambda w: eq(F.COMPONENT, w.child.id),
        lambda w, i: i.component_id == w.child.id,
        "component-exact",
    ),
    _case(
        lambda w: term(F.COMPONENT, Op.EQ, w.child.id, include_subtree=True),
        lambda w, i: i.component_id in {w.child.id, w.grandchild.id},
        "component-subtree",
    ),
    _case(
        lambda w: eq(F.COMPONENT, w.grandchild.id, w.sibling.id),
        lambda w, i: i.component_id in {w.grandchild.id, w.sibling.id},
        "component-list",
    ),
    _case(
        lambda w: term(F.COMPONENT, Op.EQ, w.child.id, w.sibling.id, include_subtree=True),
        lambda w, i: i.component_id in {w.child.id, w.grandchild.id, w.sibling.id},
        "component-list-subtree",
    ),
    _case(
        lambda w: eq(F.HOTLIST, w.hotlist.id),
        lambda w, i: w.hotlist.id in i.hotlist_ids,
        "hotlist",
    ),
    _case(lambda w: term(F.HOTLIST, Op.ANY), lambda w, i: bool(i.hotlist_ids), "hotlist-any"),
    _case(lambda w: term(F.HOTLIST, Op.NONE), lambda w, i: not i.hotlist_ids, "hotlist-none"),
    _case(
        lambda w: eq(F.ID, w.id("disk"), w.id("leak")),
        lambda w, i: i.id in {w.id("disk"), w.id("leak")},
        "id-list",
    ),
    _case(
        lambda w: term(F.ID, Op.LT, w.id("quota")),
        lambda w, i: i.id < w.id("quota"),
        "id-lt",
    ),
    _case(
        lambda w: term(F.ID, Op.GE, w.id("quota")),
        lambda w, i: i.id >= w.id("quota"),
        "id-ge",
    ),
    _case(
        lambda w: eq(F.BLOCKING, w.id("disk")),
        lambda w, i: w.id("disk") in i.blocking_ids,
        "blocking",
    ),
    _case(lambda w: term(F.BLOCKING, Op.ANY), lambda w, i: bool(i.blocking_ids), "blocking-any"),
    _case(lambda w: term(F.BLOCKING, Op.NONE), lambda w, i: not i.blocking_ids, "blocking-none"),
    _case(
        lambda w: eq(F.BLOCKED_BY, w.id("crash"), w.id("typo")),
        lambda w, i: bool({w.id("crash"), w.id("typo")} & set(i.blocked_by_ids)),
        "blocked-by-list",
    ),
    _case(lambda w: term(F.BLOCKED_BY, Op.ANY), lambda w, i: bool(i.blocked_by_ids), "blocked-any"),
    _case(
        lambda w: eq(F.PARENT, w.id("disk")),
        lambda w, i: i.parent_id == w.id("disk"),
        "parent",
    ),
    _case(lambda w: term(F.PARENT, Op.ANY), lambda w, i: i.parent_id != 0, "parent-any"),
    _case(lambda w: term(F.PARENT, Op.NONE), lambda w, i: i.parent_id == 0, "parent-none"),
    _case(
        lambda w: eq(F.CANONICAL, w.id("quota")),
        lambda w, i: i.duplicate_of_id == w.id("quota"),
        "canonical",
    ),
    _case(
        lambda w: term(F.CANONICAL, Op.NONE),
        lambda w, i: i.duplicate_of_id == 0,
        "canonical-none",
    ),
    _case(
        lambda w: term(F.CREATED, Op.LT, _created(w, "typo")),
        lambda w, i: i.created_at is not None and i.created_at < _created(w, "typo"),
        "created-lt",
    ),
    _case(
        lambda w: term(F.CREATED, Op.LE, _created(w, "typo")),
        lambda w, i: i.created_at is not None and i.created_at <= _created(w, "typo"),
        "created-le",
    ),
    _case(
        lambda w: term(F.CREATED, Op.GT, _created(w, "typo")),
        lambda w, i: i.created_at is not None and i.created_at > _created(w, "typo"),
        "created-gt",
    ),
    _case(
        lambda w: term(F.CREATED, Op.GE, _created(w, "typo")),
        lambda w, i: i.created_at is not None and i.created_at >= _created(w, "typo"),
        "created-ge",
    ),
    _case(
        lambda w: term(F.MODIFIED, Op.GT, _modified(w, "welcome")),
        lambda w, i: i.modified_at is not None and i.modified_at > _modified(w, "welcome"),
        "modified-gt",
    ),
    _case(
        lambda w: term(F.MODIFIED, Op.LE, _modified(w, "welcome")),
        lambda w, i: i.modified_at is not None and i.modified_at <= _modified(w, "welcome"),
        "modified-le",
    ),
    # ---- negation and boolean structure ----
    _case(
        lambda w: negate(eq(F.ASSIGNEE, w.ub.user_id)),
        lambda w, i: i.assignee != w.ub.user_id,
        "not-assignee-includes-unassigned",
    ),
    _case(
        lambda w: negate(eq(F.CC, w.ub.user_id)),
        lambda w, i: w.ub.user_id not in i.cc,
        "not-cc-includes-empty-cc",
    ),
    _case(
        lambda w: negate(eq(F.VERIFIER, w.uc.user_id)),
        lambda w, i: i.verifier != w.uc.user_id,
        "not-verifier",
    ),
    _case(
        lambda w: negate(eq(F.PARENT, w.id("disk"))),
        lambda w, i: i.parent_id != w.id("disk"),
        "not-parent-includes-orphans",
    ),
    _case(
        lambda w: negate(eq(F.HOTLIST, w.hotlist.id)),
        lambda w, i: w.hotlist.id not in i.hotlist_ids,
        "not-hotlist",
    ),
    _case(
        lambda w: negate(eq(F.STATUS_CLASS, "open")),
        lambda w, i: i.status not in OPEN_STATUSES,
        "not-open",
    ),
    _case(
        lambda w: negate(negate(eq(F.PRIORITY, 1))),
        lambda w, i: _p(i) == 1,
        "double-negation",
    ),
    _case(
        lambda w: negate(term(F.ASSIGNEE, Op.NONE)),
        lambda w, i: bool(i.assignee),
        "not-none-is-any",
    ),
    _case(
        lambda w: all_of(eq(F.STATUS_CLASS, "open"), term(F.PRIORITY, Op.LE, 1)),
        lambda w, i: i.status in OPEN_STATUSES and _p(i) <= 1,
        "all-of",
    ),
    _case(
        lambda w: any_of(eq(F.TYPE, "TASK"), eq(F.ASSIGNEE, w.uc.user_id)),
        lambda w, i: i.type == v1.IssueType.TASK or i.assignee == w.uc.user_id,
        "any-of",
    ),
    _case(
        lambda w: all_of(
            any_of(eq(F.PRIORITY, 0), eq(F.SEVERITY, 0)),
            negate(eq(F.COMPONENT, w.root.id)),
        ),
        lambda w, i: (_p(i) == 0 or _s(i) == 0) and i.component_id != w.root.id,
        "nested",
    ),
    _case(
        lambda w: any_of(
            all_of(eq(F.REPORTER, w.ua.user_id), eq(F.STATUS_CLASS, "closed")),
            all_of(eq(F.REPORTER, w.ub.user_id), negate(term(F.HOTLIST, Op.ANY))),
        ),
        lambda w, i: (
            (i.reporter == w.ua.user_id and i.status not in OPEN_STATUSES)
            or (i.reporter == w.ub.user_id and not i.hotlist_ids)
        ),
        "or-of-ands",
    ),
    _case(
        lambda w: all_of(v1.SearchNode(), eq(F.PRIORITY, 1)),
        lambda w, i: _p(i) == 1,
        "unset-node-matches-all",
    ),
]

#: Phrases over TEXT: the phrase, the exact names it matches, and the case's id.
PHRASE_CASES: list[tuple[str, set[str], str]] = [
    ("storage graphs", {"quota", "graphs"}, "phrase"),
    ("graphs dashboard", set(), "phrase-order"),
    ("storage node", {"disk"}, "phrase-adjacent"),
    ("buffer overflow", {"crash"}, "phrase-in-comment"),
    # A stop word holds its place: "on" is no lexeme, but the words around it
    # are two apart, and a phrase without it does not match.
    ("quota exceeded on storage node", {"disk"}, "phrase-with-stop-word"),
    ("quota exceeded storage node", set(), "phrase-stop-word-holds-its-place"),
    # TEXT reads title, description and comments as one text, in that order:
    # a phrase may run from the title on into the description or a comment.
    ("never arrives users report", {"welcome"}, "phrase-from-title-into-description"),
    ("large files root cause", {"crash"}, "phrase-from-title-into-comment"),
]


def phrase(text: str) -> v1.SearchNode:
    """A TEXT phrase term (words adjacent and in order)."""
    return term(F.TEXT, Op.EQ, text, phrase=True)


#: Full-text terms: the query, and the exact names it matches.
TEXT_CASES = [
    pytest.param(lambda w: eq(F.TEXT, "storage"), {"disk", "quota", "graphs"}, id="word"),
    pytest.param(lambda w: eq(F.TEXT, "DISK"), {"disk"}, id="case-insensitive"),
    pytest.param(lambda w: eq(F.TEXT, "uploads"), {"crash", "leak"}, id="stemmed"),
    pytest.param(lambda w: eq(F.TEXT, "crashes"), {"crash"}, id="stemmed-plural"),
    pytest.param(lambda w: eq(F.TEXT, "compaction"), {"disk"}, id="text-in-description"),
    pytest.param(lambda w: eq(F.TEXT, "overflow"), {"crash"}, id="text-in-later-comment"),
    pytest.param(lambda w: eq(F.TEXT, "graphs dashboard"), {"quota", "graphs"}, id="all-words"),
    pytest.param(lambda w: eq(F.TEXT, "storage memory"), set(), id="all-words-needed"),
    pytest.param(
        lambda w: eq(F.TEXT, "compaction", "memory"), {"disk", "leak"}, id="values-are-or"
    ),
    *(
        pytest.param(lambda w, text=text: phrase(text), names, id=case_id)
        for text, names, case_id in PHRASE_CASES
    ),
    pytest.param(
        lambda w: negate(phrase("storage graphs")),
        {"disk", "login", "crash", "typo", "leak", "secret", "welcome"},
        id="not-phrase",
    ),
    pytest.param(
        lambda w: any_of(phrase("storage graphs"), eq(F.TEXT, "compaction")),
        {"quota", "graphs", "disk"},
        id="phrase-or-word",
    ),
    pytest.param(lambda w: eq(F.TITLE, "storage"), {"disk", "quota", "graphs"}, id="title"),
    pytest.param(lambda w: eq(F.TITLE, "compaction"), set(), id="title-not-description"),
    pytest.param(lambda w: eq(F.TITLE, "overflow"), set(), id="title-not-comment"),
    pytest.param(
        lambda w: term(F.TITLE, Op.EQ, "storage graphs", phrase=True),
        {"quota", "graphs"},
        id="title-phrase",
    ),
    pytest.param(lambda w: eq(F.COMMENT, "overflow"), {"crash"}, id="comment"),
    pytest.param(lambda w: eq(F.COMMENT, "compaction"), {"disk"}, id="comment-description"),
    pytest.param(lambda w: eq(F.COMMENT, "dashboard"), set(), id="comment-not-title"),
    pytest.param(lambda w: eq(F.COMMENT, "rendering"), {"login"}, id="comment-stemmed"),
    pytest.param(
        lambda w: term(F.COMMENT, Op.EQ, "upload handler", phrase=True),
        {"crash"},
        id="comment-phrase",
    ),
    pytest.param(
        lambda w: negate(eq(F.TEXT, "storage")),
        {"login", "crash", "typo", "leak", "secret", "welcome"},
        id="not-text",
    ),
    pytest.param(
        lambda w: all_of(eq(F.TEXT, "storage"), term(F.PRIORITY, Op.GT, 0)),
        {"quota", "graphs"},
        id="text-and-field",
    ),
]


class SearchContract:
    """SearchIssues filters: every field, operator and boolean construct.

    Pins down, against a fixed set of issues with exact expected results: each
    SearchField with EQ (one value and comma lists), comparisons, ANY/NONE,
    component subtrees, negation as the exact complement (including issues whose
    field is empty), any_of/all_of nesting, unset nodes, full-text words and
    phrases over title, description and comments with English stemming, and
    that a caller never sees or counts an issue they may not view.
    """

    @pytest.fixture(scope="class")
    @classmethod
    async def search_world(cls, bugless_model_channel: Channel) -> SearchWorld:
        """The issues every test of this class searches (read-only)."""
        return await build_search_world(bugless_model_channel)

    async def _check(
        self,
        model: v1.ModelStub,
        world: SearchWorld,
        node: v1.SearchNode,
        expected: set[str],
    ) -> None:
        page = await search_page(model, within(world.root.id, node), page_size=500)
        got = world.names([i.id for i in page.issues])
        assert set(got) == expected
        assert [i.id for i in page.issues] == sorted((i.id for i in page.issues), reverse=True), (
            "default order is id descending"
        )
        assert page.total_count == len(expected)
        assert page.total_is_lower_bound is False
        assert page.next_page_token == ""
        as_ub = await search_page(
            model, within(world.root.id, node), caller=world.ub, page_size=500
        )
        visible = expected & world.visible_to_ub()
        assert set(world.names([i.id for i in as_ub.issues])) == visible
        assert as_ub.total_count == len(visible)

    @pytest.mark.parametrize(("node", "matches"), FIELD_CASES)
    async def test_field_term_matches_exactly_the_issues_the_rule_selects(
        self,
        model: v1.ModelStub,
        search_world: SearchWorld,
        node: NodeOf,
        matches: Matches,
    ) -> None:
        world = search_world
        expected = {n for n, issue in world.issues.items() if matches(world, issue)}
        assert expected, "the fixture should give this case something to find"
        assert expected != set(world.issues), "the fixture should give this case something to skip"
        await self._check(model, world, node(world), expected)

    @pytest.mark.parametrize(("node", "expected"), TEXT_CASES)
    async def test_full_text_term_matches_exactly(
        self,
        model: v1.ModelStub,
        search_world: SearchWorld,
        node: NodeOf,
        expected: set[str],
    ) -> None:
        await self._check(model, search_world, node(search_world), expected)

    @pytest.mark.parametrize("field", [F.TEXT, F.TITLE, F.COMMENT])
    async def test_any_on_text_fields_is_always_true(
        self, model: v1.ModelStub, search_world: SearchWorld, field: v1.SearchField
    ) -> None:
        await self._check(model, search_world, term(field, Op.ANY), set(search_world.issues))

    async def test_subtree_of_the_root_is_every_issue(
        self, model: v1.ModelStub, search_world: SearchWorld
    ) -> None:
        page = await search_page(model, within(search_world.root.id), page_size=500)
        assert set(search_world.names([i.id for i in page.issues])) == set(search_world.issues)

    async def test_results_are_the_issues_as_get_returns_them(
        self, model: v1.ModelStub, search_world: SearchWorld
    ) -> None:
        page = await search_page(
            model, within(search_world.root.id), caller=search_world.ub, page_size=500
        )
        for issue in page.issues:
            got = await model.get_issue(
                v1.GetIssueRequest(caller=search_world.ub, issue_id=issue.id)
            )
            assert issue == got

    async def test_secret_issue_is_invisible_even_when_named_by_id(
        self, model: v1.ModelStub, search_world: SearchWorld
    ) -> None:
        page = await search_page(model, eq(F.ID, search_world.id("secret")), caller=search_world.ub)
        assert page.issues == []
        assert page.total_count == 0
        assert [
            i.id
            for i in (
                await search_page(
                    model, eq(F.ID, search_world.id("secret")), caller=search_world.ua
                )
            ).issues
        ] == [search_world.id("secret")]

    async def test_unset_filter_matches_every_visible_issue(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        newest = await make_issue(model, comp.id)
        page = await model.search_issues(
            v1.SearchIssuesRequest(caller=ADMIN, page=v1.PageRequest(page_size=1))
        )
        assert [i.id for i in page.issues] == [newest.id]
        assert page.total_count >= 1
        empty_query = await model.search_issues(
            v1.SearchIssuesRequest(
                caller=ADMIN, query=v1.StructuredQuery(), page=v1.PageRequest(page_size=1)
            )
        )
        assert [i.id for i in empty_query.issues] == [newest.id]

    async def test_a_summary_page_leaves_out_description_and_cc_only(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        made = await make_issue(model, comp.id, description="a long story", cc=["x", "y"])
        query = v1.StructuredQuery(filter=within(comp.id))
        full = await model.search_issues(v1.SearchIssuesRequest(caller=ADMIN, query=query))
        summary = await model.search_issues(
            v1.SearchIssuesRequest(caller=ADMIN, query=query, summary=True)
        )
        assert [i.description for i in full.issues] == ["a long story"]
        (listed,) = summary.issues
        assert (listed.description, listed.cc) == ("", [])
        listed.description, listed.cc = made.description, made.cc
        assert listed == full.issues[0]
        assert (summary.total_count, summary.next_page_token) == (1, "")
