"""Contract: search result order, pages, page tokens and counts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from grpclib.client import Channel
from grpclib.const import Status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bugless_proto import v1
from bugless_testing.model_contracts._search_world import SearchWorld, build_search_world
from bugless_testing.model_contracts._support import (
    ADMIN,
    ALICE,
    BOB,
    change,
    eq,
    expect_error,
    make_component,
    make_issue,
    search_all,
    search_page,
    sort,
    within,
)

S = v1.SortField

_KEYS: dict[v1.SortField, Callable[[v1.Issue], Any]] = {
    S.ID: lambda i: i.id,
    S.CREATED: lambda i: i.created_at,
    S.MODIFIED: lambda i: i.modified_at,
    S.PRIORITY: lambda i: i.priority.value,
    S.SEVERITY: lambda i: i.severity.value,
    S.STATUS: lambda i: i.status.value,
    S.TITLE: lambda i: i.title,
}


def expected_order(issues: Sequence[v1.Issue], order: Sequence[v1.SortKey]) -> list[int]:
    """Ids in the contract's order: the keys, then id in the last key's direction."""
    descending = order[-1].descending if order else True
    ranked = sorted(issues, key=lambda i: i.id, reverse=descending)
    for key in reversed(order):
        ranked = sorted(ranked, key=_KEYS[key.field], reverse=key.descending)
    return [i.id for i in ranked]


_ORDERS = st.lists(
    st.builds(sort, st.sampled_from(list(_KEYS)), descending=st.booleans()),
    max_size=2,
    unique_by=lambda k: k.field,
)


class SearchOrderContract:
    """SearchIssues order, paging, page tokens and total counts.

    Pins down: the default order (newest first), every sort key in both
    directions with id as the final tie-breaker in the last key's direction,
    ascending priority starting at P0, several keys, pages that together give
    the whole result exactly once (also while other issues are created and
    changed between pages), the default page size of 50, tokens bound to query,
    order and caller and refused when altered, and exact total counts.
    """

    @pytest.fixture(scope="class")
    @classmethod
    async def search_world(cls, bugless_model_channel: Channel) -> SearchWorld:
        """The issues every ordering test sorts (read-only)."""
        return await build_search_world(bugless_model_channel)

    async def test_default_order_is_newest_first(
        self, model: v1.ModelStub, search_world: SearchWorld
    ) -> None:
        got = [i.id for i in await search_all(model, within(search_world.root.id))]
        assert got == sorted((i.id for i in search_world.issues.values()), reverse=True)

    @pytest.mark.parametrize("descending", [False, True], ids=["asc", "desc"])
    @pytest.mark.parametrize("field", list(_KEYS), ids=lambda f: f.name)
    async def test_sort_key_orders_results_with_id_tie_breaker(
        self,
        model: v1.ModelStub,
        search_world: SearchWorld,
        field: v1.SortField,
        descending: bool,
    ) -> None:
        order = [sort(field, descending=descending)]
        got = [i.id for i in await search_all(model, within(search_world.root.id), order=order)]
        expected = expected_order(list(search_world.issues.values()), order)
        assert search_world.names(got) == search_world.names(expected)

    async def test_ascending_priority_puts_p0_first(
        self, model: v1.ModelStub, search_world: SearchWorld
    ) -> None:
        got = await search_all(model, within(search_world.root.id), order=[sort(S.PRIORITY)])
        priorities = [i.priority for i in got]
        assert priorities[0] == v1.Priority.P0
        assert priorities[-1] == v1.Priority.P4
        assert priorities == sorted(priorities, key=lambda p: p.value)

    @pytest.mark.parametrize(
        "order",
        [
            pytest.param([sort(S.PRIORITY), sort(S.CREATED, descending=True)], id="p-asc-c-desc"),
            pytest.param([sort(S.SEVERITY, descending=True), sort(S.TITLE)], id="s-desc-t-asc"),
            pytest.param([sort(S.STATUS), sort(S.PRIORITY, descending=True)], id="st-asc-p-desc"),
        ],
    )
    async def test_several_sort_keys_apply_in_turn(
        self, model: v1.ModelStub, search_world: SearchWorld, order: list[v1.SortKey]
    ) -> None:
        got = [i.id for i in await search_all(model, within(search_world.root.id), order=order)]
        expected = expected_order(list(search_world.issues.values()), order)
        assert search_world.names(got) == search_world.names(expected)

    @settings(
        max_examples=12,
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
    @given(order=_ORDERS, page_size=st.integers(min_value=1, max_value=4))
    async def test_pages_cover_each_issue_exactly_once_in_order(
        self,
        model: v1.ModelStub,
        search_world: SearchWorld,
        order: list[v1.SortKey],
        page_size: int,
    ) -> None:
        node = within(search_world.root.id)
        whole = await search_all(model, node, order=order, page_size=500)
        paged = await search_all(model, node, order=order, page_size=page_size)
        assert [i.id for i in paged] == [i.id for i in whole]
        assert [i.id for i in whole] == expected_order(list(search_world.issues.values()), order)

    async def test_page_size_may_change_between_pages(
        self, model: v1.ModelStub, search_world: SearchWorld
    ) -> None:
        """A token is a position, not a page number: any page size continues from it."""
        node = within(search_world.root.id)
        whole = [i.id for i in await search_all(model, node, page_size=500)]
        seen: list[int] = []
        token = ""
        for size in (2, 5, 1, 3, 500):
            page = await search_page(model, node, page_size=size, page_token=token)
            assert len(page.issues) == min(size, len(whole) - len(seen))
            seen += [i.id for i in page.issues]
            token = page.next_page_token
            if not token:
                break
        assert seen == whole
        assert token == ""

    async def test_last_page_has_empty_token_and_counts_are_exact(
        self, model: v1.ModelStub, search_world: SearchWorld
    ) -> None:
        node = within(search_world.root.id)
        total = len(search_world.issues)
        first = await search_page(model, node, page_size=total - 1)
        assert len(first.issues) == total - 1
        assert first.next_page_token
        assert first.total_count == total
        assert first.total_is_lower_bound is False
        second = await search_page(
            model, node, page_size=total - 1, page_token=first.next_page_token
        )
        assert len(second.issues) == 1
        assert second.total_count == total
        exact = await search_page(model, node, page_size=total)
        assert len(exact.issues) == total
        if exact.next_page_token:
            rest = await search_page(model, node, page_size=total, page_token=exact.next_page_token)
            assert rest.issues == []
            assert rest.next_page_token == ""

    @pytest.mark.parametrize(
        "order",
        [
            pytest.param([], id="default"),
            pytest.param([sort(S.ID)], id="id-asc"),
            pytest.param([sort(S.PRIORITY)], id="priority-asc"),
            pytest.param([sort(S.TITLE, descending=True)], id="title-desc"),
            pytest.param([sort(S.CREATED)], id="created-asc"),
        ],
    )
    async def test_paging_while_issues_are_created_never_repeats_or_skips(
        self, model: v1.ModelStub, order: list[v1.SortKey]
    ) -> None:
        comp = await make_component(model)
        priorities = [p for p in v1.Priority if p.value]
        original = [
            await make_issue(
                model, comp.id, title=f"T{n:02d}", priority=priorities[n % len(priorities)]
            )
            for n in range(12)
        ]
        node = within(comp.id)
        seen: list[int] = []
        token = ""
        for round_ in range(50):
            page = await search_page(model, node, order=order, page_size=3, page_token=token)
            seen.extend(i.id for i in page.issues)
            token = page.next_page_token
            if not token:
                break
            await asyncio.gather(
                make_issue(model, comp.id, title=f"N{round_:02d}a", priority=v1.Priority.P0),
                make_issue(model, comp.id, title=f"Z{round_:02d}b", priority=v1.Priority.P4),
                change(
                    model,
                    original[round_ % len(original)],
                    comment=f"touch {round_}",
                    expected_version=None,
                ),
            )
            original[round_ % len(original)] = await model.get_issue(
                v1.GetIssueRequest(caller=ADMIN, issue_id=original[round_ % len(original)].id)
            )
        assert len(seen) == len(set(seen)), "an issue was repeated"
        assert {i.id for i in original} <= set(seen), "an issue was skipped"

    async def test_default_page_size_is_fifty(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        sem = asyncio.Semaphore(8)

        async def one() -> v1.Issue:
            async with sem:
                return await make_issue(model, comp.id)

        await asyncio.gather(*(one() for _ in range(53)))
        first = await search_page(model, within(comp.id))
        assert len(first.issues) == 50
        assert first.total_count == 53
        assert first.next_page_token
        second = await search_page(model, within(comp.id), page_token=first.next_page_token)
        assert len(second.issues) == 3
        assert second.next_page_token == ""
        biggest = await search_page(model, within(comp.id), page_size=500)
        assert len(biggest.issues) == 53

    # ---- page tokens ----

    async def _token(self, model: v1.ModelStub, world: SearchWorld) -> str:
        page = await search_page(model, within(world.root.id), page_size=2)
        assert page.next_page_token
        return page.next_page_token

    @pytest.mark.parametrize(
        "mutate",
        [
            pytest.param(lambda t: t[:-2] + ("AA" if t[-2:] != "AA" else "BB"), id="tail"),
            pytest.param(lambda t: t[:10] + ("x" if t[10] != "x" else "y") + t[11:], id="middle"),
            pytest.param(lambda t: t[: len(t) // 2], id="truncated"),
            pytest.param(lambda t: "not-a-token", id="garbage"),
            pytest.param(lambda t: t + "A", id="extended"),
        ],
    )
    async def test_tampered_token_is_invalid_argument(
        self, model: v1.ModelStub, search_world: SearchWorld, mutate: Callable[[str], str]
    ) -> None:
        token = await self._token(model, search_world)
        await expect_error(
            search_page(model, within(search_world.root.id), page_size=2, page_token=mutate(token)),
            Status.INVALID_ARGUMENT,
            "page_token",
        )

    async def test_token_of_another_query_is_invalid_argument(
        self, model: v1.ModelStub, search_world: SearchWorld
    ) -> None:
        token = await self._token(model, search_world)
        await expect_error(
            search_page(
                model,
                within(search_world.root.id, eq(v1.SearchField.PRIORITY, 1)),
                page_size=2,
                page_token=token,
            ),
            Status.INVALID_ARGUMENT,
            "page_token",
        )

    async def test_token_with_another_order_is_invalid_argument(
        self, model: v1.ModelStub, search_world: SearchWorld
    ) -> None:
        token = await self._token(model, search_world)
        await expect_error(
            search_page(
                model,
                within(search_world.root.id),
                order=[sort(S.PRIORITY)],
                page_size=2,
                page_token=token,
            ),
            Status.INVALID_ARGUMENT,
            "page_token",
        )

    async def test_token_of_another_caller_is_invalid_argument(
        self, model: v1.ModelStub, search_world: SearchWorld
    ) -> None:
        page = await search_page(model, within(search_world.root.id), caller=ALICE, page_size=2)
        assert page.next_page_token
        await expect_error(
            search_page(
                model,
                within(search_world.root.id),
                caller=BOB,
                page_size=2,
                page_token=page.next_page_token,
            ),
            Status.INVALID_ARGUMENT,
            "page_token",
        )

    async def test_history_token_is_not_a_search_token(
        self, model: v1.ModelStub, search_world: SearchWorld
    ) -> None:
        issue = search_world.issues["crash"]
        history = await model.list_history(
            v1.ListHistoryRequest(caller=ADMIN, issue_id=issue.id, page=v1.PageRequest(page_size=1))
        )
        assert history.next_page_token
        await expect_error(
            search_page(model, within(search_world.root.id), page_token=history.next_page_token),
            Status.INVALID_ARGUMENT,
            "page_token",
        )

    async def test_page_size_above_500_is_invalid_argument(
        self, model: v1.ModelStub, search_world: SearchWorld
    ) -> None:
        await expect_error(
            search_page(model, within(search_world.root.id), page_size=501),
            Status.INVALID_ARGUMENT,
            "page_size",
        )
