"""The search count cap (``search_count_cap``), on a real PostgreSQL.

A second backend on the conformance database with a cap of 3 makes the
capped count observable without creating 10,000 issues.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import uuid
from typing import Any

import pytest
from write_support import logged_statements

from bugless_core.model.backend import ModelSettings
from bugless_core.page_tokens import PageTokenCodec
from bugless_core.search.build import all_of, term
from bugless_model_postgres import PostgresBackend
from bugless_proto import v1

ADMIN = v1.Caller(user_id="cap-admin", admin=True)
CAP = 3


async def _search(
    backend: PostgresBackend, component_id: int, page_size: int, page_token: str = ""
) -> v1.SearchIssuesResponse:
    return await backend.search_issues(
        v1.SearchIssuesRequest(
            caller=ADMIN,
            query=v1.StructuredQuery(
                filter=term(v1.SearchField.COMPONENT, v1.SearchOperator.EQ, component_id)
            ),
            page=v1.PageRequest(page_size=page_size, page_token=page_token),
        )
    )


async def _create(backend: PostgresBackend, component_id: int, count: int) -> None:
    for n in range(count):
        await backend.create_issue(
            v1.CreateIssueRequest(
                caller=ADMIN, fields=v1.IssueFields(title=f"cap {n}", component_id=component_id)
            )
        )


def _without_total(token: str, secret: str) -> str:
    """``token`` as it was issued before tokens carried the total (same position and request)."""
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    data = json.loads(raw[16:])  # after the MAC
    assert "t" in data
    return PageTokenCodec(secret).encode(data["p"], data["f"])


@pytest.mark.parametrize(
    ("before", "after"), [(CAP - 1, CAP + 1), (CAP, CAP + 1), (CAP + 1, CAP + 2)]
)
async def test_later_pages_report_the_first_pages_total_without_counting(
    bugless_model_backend: PostgresBackend,  # the database, migrated
    model_settings: ModelSettings,
    before: int,
    after: int,
) -> None:
    """Page 1's total (count and lower-bound flag) rides in the token; later pages do not count.

    A token from before totals were carried still pages, and that page counts.
    """
    settings = dataclasses.replace(
        model_settings, search_count_cap=CAP, pool_min_size=1, pool_max_size=1
    )
    capped = await PostgresBackend.open(settings)
    try:
        component = await capped.create_component(
            v1.CreateComponentRequest(caller=ADMIN, name=f"carry-{uuid.uuid4().hex[:8]}")
        )
        await _create(capped, component.id, before)
        first = await _search(capped, component.id, page_size=1)
        then = (min(before, CAP), before > CAP)
        assert (first.total_count, first.total_is_lower_bound) == then
        await _create(capped, component.id, after - before)
        now = (min(after, CAP), after > CAP)

        later: list[v1.SearchIssuesResponse] = []
        async with logged_statements(capped) as seen:
            token = first.next_page_token
            while token:
                later.append(await _search(capped, component.id, 1, token))
                token = later[-1].next_page_token
        assert len(later) == before - 1  # the new issues sort before page 1 (id descending)
        assert {(p.total_count, p.total_is_lower_bound) for p in later} == {then}
        assert seen
        assert not [s for s in seen if "count(" in s]
        again = await _search(capped, component.id, page_size=1)
        assert (again.total_count, again.total_is_lower_bound) == now

        old = _without_total(first.next_page_token, settings.page_token_secret)
        async with logged_statements(capped) as seen:
            recounted = await _search(capped, component.id, 1, old)
        assert (recounted.total_count, recounted.total_is_lower_bound) == now
        assert [i.id for i in recounted.issues] == [i.id for i in later[0].issues]
        assert [s for s in seen if "count(" in s]
    finally:
        await capped.close()


async def test_counts_above_the_cap_are_a_lower_bound_and_pages_are_unaffected(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings
) -> None:
    capped = await PostgresBackend.open(dataclasses.replace(model_settings, search_count_cap=CAP))
    try:
        component = await capped.create_component(
            v1.CreateComponentRequest(caller=ADMIN, name=f"cap-{uuid.uuid4().hex[:8]}")
        )
        for n in range(CAP):
            await capped.create_issue(
                v1.CreateIssueRequest(
                    caller=ADMIN, fields=v1.IssueFields(title=f"cap {n}", component_id=component.id)
                )
            )
        exact = await _search(capped, component.id, page_size=10)
        assert (exact.total_count, exact.total_is_lower_bound) == (CAP, False)

        for n in range(CAP, CAP + 2):
            await capped.create_issue(
                v1.CreateIssueRequest(
                    caller=ADMIN, fields=v1.IssueFields(title=f"cap {n}", component_id=component.id)
                )
            )
        above = await _search(capped, component.id, page_size=10)
        assert (above.total_count, above.total_is_lower_bound) == (CAP, True)
        assert len(above.issues) == CAP + 2  # the cap bounds counting, not results
        uncapped = await _search(bugless_model_backend, component.id, page_size=10)
        assert (uncapped.total_count, uncapped.total_is_lower_bound) == (CAP + 2, False)
    finally:
        await capped.close()


def test_a_cap_below_one_is_refused(model_settings: ModelSettings) -> None:
    with pytest.raises(ValueError, match="search_count_cap"):
        dataclasses.replace(model_settings, search_count_cap=0)


async def _walk(
    backend: PostgresBackend, query: v1.StructuredQuery, page_size: int
) -> tuple[list[int], set[tuple[int, bool]]]:
    """Every page of ``query``: the ids in page order and the counts the pages gave."""
    ids: list[int] = []
    counts: set[tuple[int, bool]] = set()
    token = ""
    for _ in range(20):  # each walk here has at most 3 pages; a token that repeats would loop
        page = await backend.search_issues(
            v1.SearchIssuesRequest(
                caller=ADMIN,
                query=query,
                page=v1.PageRequest(page_size=page_size, page_token=token),
                summary=True,
            )
        )
        ids += [i.id for i in page.issues]
        counts.add((page.total_count, page.total_is_lower_bound))
        token = page.next_page_token
        if not token:
            return ids, counts
    pytest.fail(f"the page walk did not end: {ids}")


@pytest.mark.parametrize(
    ("order_by", "key"),
    [
        ([], lambda i: -i.id),
        ([v1.SortKey(field=v1.SortField.PRIORITY)], lambda i: (i.priority, i.id)),
        (
            [v1.SortKey(field=v1.SortField.TITLE, descending=True)],
            lambda i: tuple(-ord(ch) for ch in i.title),
        ),
        (
            [
                v1.SortKey(field=v1.SortField.PRIORITY, descending=True),
                v1.SortKey(field=v1.SortField.ID),
            ],
            lambda i: (-i.priority, i.id),
        ),
    ],
    ids=["id", "priority", "title-descending", "mixed-directions"],
)
async def test_text_pages_come_from_the_counted_matches_below_and_above_the_cap(
    bugless_model_backend: PostgresBackend,
    model_settings: ModelSettings,
    order_by: list[v1.SortKey],
    key: Any,
) -> None:
    """A full-text search's page is taken from the count's matches when they are all of them.

    Below the cap (the default backend) and above it (a cap of 3, where the
    page is searched on its own), every page walk returns each match once,
    in order, with the same count on every page; issues that hold the words
    but not the phrase match the words only.
    """
    capped = await PostgresBackend.open(dataclasses.replace(model_settings, search_count_cap=CAP))
    try:
        component = await capped.create_component(
            v1.CreateComponentRequest(caller=ADMIN, name=f"phrase-{uuid.uuid4().hex[:8]}")
        )
        matches = []
        for n, priority in enumerate([3, 1, 3, 2, 1]):
            made = await capped.create_issue(
                v1.CreateIssueRequest(
                    caller=ADMIN,
                    fields=v1.IssueFields(
                        title=f"socket {chr(ord('a') + n)} reset by peer",
                        component_id=component.id,
                        priority=v1.Priority(priority),
                    ),
                    description=f"zqphrase{n}" if n % 2 else "",
                )
            )
            matches.append(made)
        words = list(matches)
        for title in ("peer reset zqphrase", "reset the socket peer zqphrase"):
            made = await capped.create_issue(
                v1.CreateIssueRequest(
                    caller=ADMIN, fields=v1.IssueFields(title=title, component_id=component.id)
                )
            )
            words.append(made)
        for phrase, found in ((True, matches), (False, words)):
            await _walk_both(
                bugless_model_backend,
                capped,
                component.id,
                phrase=phrase,
                order_by=order_by,
                expected=[i.id for i in sorted(found, key=key)],
            )
    finally:
        await capped.close()


async def _walk_both(
    backend: PostgresBackend,
    capped: PostgresBackend,
    component_id: int,
    *,
    phrase: bool,
    order_by: list[v1.SortKey],
    expected: list[int],
) -> None:
    query = v1.StructuredQuery(
        filter=all_of(
            term(v1.SearchField.COMPONENT, v1.SearchOperator.EQ, component_id),
            term(v1.SearchField.TEXT, v1.SearchOperator.EQ, "reset by peer", phrase=phrase),
        ),
        order_by=order_by,
    )
    for searched, counts in (
        (backend, {(len(expected), False)}),
        (capped, {(CAP, True)}),
    ):
        for page_size in (2, 5, 50):
            assert await _walk(searched, query, page_size) == (expected, counts)


async def test_text_pages_read_the_matches_once_below_the_cap_and_not_again_above_it(
    bugless_model_backend: PostgresBackend,  # the database, migrated
    model_settings: ModelSettings,
) -> None:
    """A text page below the cap is one statement; above it, later pages skip the matches.

    Below the cap the page comes from the count's matches in one statement.
    Above it, the first page's statement finds the matches reach the cap
    and the page runs on its own (a second statement); its token carries a
    lower-bound total, so later pages run only the page, never reading the
    matches (``hits``) again. Every walk still returns each match once.
    """
    one = dataclasses.replace(model_settings, pool_min_size=1, pool_max_size=1)
    capped = await PostgresBackend.open(dataclasses.replace(one, search_count_cap=CAP))
    uncapped = await PostgresBackend.open(one)
    try:
        component = await capped.create_component(
            v1.CreateComponentRequest(caller=ADMIN, name=f"text-{uuid.uuid4().hex[:8]}")
        )
        made = []
        for n in range(CAP + 2):
            made.append(
                await capped.create_issue(
                    v1.CreateIssueRequest(
                        caller=ADMIN,
                        fields=v1.IssueFields(
                            title=f"zqonce {n} reset by peer", component_id=component.id
                        ),
                    )
                )
            )
        query = v1.StructuredQuery(
            filter=all_of(
                term(v1.SearchField.COMPONENT, v1.SearchOperator.EQ, component.id),
                term(v1.SearchField.TEXT, v1.SearchOperator.EQ, "zqonce reset by peer"),
            )
        )
        expected = sorted((i.id for i in made), reverse=True)
        for backend in (uncapped, capped):  # asyncpg's own first-use look-ups, out of the logs
            await _walk(backend, query, 2)

        async with logged_statements(uncapped) as seen:
            assert await _walk(uncapped, query, 2) == (expected, {(CAP + 2, False)})
        assert len(seen) == 3  # one statement per page
        assert all("hits AS" in s and "UNION ALL" not in s for s in seen)

        async with logged_statements(capped) as seen:
            assert await _walk(capped, query, 2) == (expected, {(CAP, True)})
        assert len(seen) == 4  # the first page's two statements, then one per page
        assert ["hits AS" in s for s in seen] == [True, False, False, False]
        assert all("count(" not in s for s in seen[1:])
    finally:
        await capped.close()
        await uncapped.close()
