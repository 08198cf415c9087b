"""The search count cap (``search_count_cap``), on a real PostgreSQL.

A second backend on the conformance database with a cap of 3 makes the
capped count observable without creating 10,000 issues.
"""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from bugless_core.model.backend import ModelSettings
from bugless_model_postgres import PostgresBackend
from bugless_proto import v1

ADMIN = v1.Caller(user_id="cap-admin", admin=True)
CAP = 3


async def _search(
    backend: PostgresBackend, component_id: int, page_size: int
) -> v1.SearchIssuesResponse:
    term = v1.SearchTerm(
        field=v1.SearchField.COMPONENT,
        op=v1.SearchOperator.EQ,
        values=[v1.SearchValue(integer=component_id)],
    )
    return await backend.search_issues(
        v1.SearchIssuesRequest(
            caller=ADMIN,
            query=v1.StructuredQuery(filter=v1.SearchNode(term=term)),
            page=v1.PageRequest(page_size=page_size),
        )
    )


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
