"""Contract: a bad read or query gets INVALID_ARGUMENT naming what is wrong.

Apart from :mod:`._bad_input` (requests that would write), because nothing
here can write: what is checked is only the status and the field it names,
for batch gets, page tokens and sizes, and the search tree's terms.
"""

from __future__ import annotations

import pytest
from grpclib.const import Status

from bugless_core import limits
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask
from bugless_testing.model_contracts._support import (
    ALICE,
    expect_error,
    make_component,
    make_issue,
    search_page,
    within,
)


class BadReadContract:
    """Malformed reads and queries: INVALID_ARGUMENT naming the field.

    Pins down: batch gets of too many, no, repeated or negative ids, or a read
    mask naming no Issue field; malformed page tokens for search and history;
    page sizes above the limit; and search terms that do not fit their field
    (unknown values, operators, fields; values missing or of the wrong kind;
    a subtree outside the component field), named down to the term's part.
    """

    async def test_batch_get_of_501_ids_is_invalid_argument(self, model: v1.ModelStub) -> None:
        ids = list(range(1, limits.MAX_BATCH_GET + 2))
        await expect_error(
            model.batch_get_issues(v1.BatchGetIssuesRequest(caller=ALICE, issue_ids=ids)),
            Status.INVALID_ARGUMENT,
            "issue_ids",
        )

    @pytest.mark.parametrize(
        "ids",
        [
            pytest.param([], id="empty"),
            pytest.param([5, 5], id="repeated"),
            pytest.param([-1], id="negative"),
        ],
    )
    async def test_bad_batch_get_ids_are_invalid_argument(
        self, model: v1.ModelStub, ids: list[int]
    ) -> None:
        await expect_error(
            model.batch_get_issues(v1.BatchGetIssuesRequest(caller=ALICE, issue_ids=ids)),
            Status.INVALID_ARGUMENT,
            "issue_ids",
        )

    async def test_batch_get_read_mask_naming_no_issue_field_is_invalid_argument(
        self, model: v1.ModelStub
    ) -> None:
        mask = FieldMask(paths=["title", "colour"])
        request = v1.BatchGetIssuesRequest(caller=ALICE, issue_ids=[1], read_mask=mask)
        await expect_error(
            model.batch_get_issues(request),
            Status.INVALID_ARGUMENT,
            "read_mask.paths[1]",
            "'colour' is no Issue field",
        )

    @pytest.mark.parametrize("token", ["garbage", "AAAA", "%%%", "x" * 5000])
    async def test_malformed_page_tokens_are_invalid_argument(
        self, model: v1.ModelStub, token: str
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        await expect_error(
            search_page(model, within(comp.id), page_token=token),
            Status.INVALID_ARGUMENT,
            "page_token",
        )
        await expect_error(
            model.list_history(
                v1.ListHistoryRequest(
                    caller=ALICE, issue_id=issue.id, page=v1.PageRequest(page_token=token)
                )
            ),
            Status.INVALID_ARGUMENT,
            "page_token",
        )

    async def test_history_page_size_above_500_is_invalid_argument(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        await expect_error(
            model.list_history(
                v1.ListHistoryRequest(
                    caller=ALICE, issue_id=issue.id, page=v1.PageRequest(page_size=501)
                )
            ),
            Status.INVALID_ARGUMENT,
            "page.page_size",
        )

    @pytest.mark.parametrize(
        ("node", "named"),
        [
            pytest.param(
                v1.SearchNode(
                    term=v1.SearchTerm(
                        field=v1.SearchField.STATUS,
                        op=v1.SearchOperator.EQ,
                        values=[v1.SearchValue(text="BOGUS")],
                    )
                ),
                "values[0]",
                id="unknown-status",
            ),
            pytest.param(
                v1.SearchNode(
                    term=v1.SearchTerm(
                        field=v1.SearchField.PRIORITY,
                        op=v1.SearchOperator.EQ,
                        values=[v1.SearchValue(integer=7)],
                    )
                ),
                "values[0]",
                id="priority-out-of-range",
            ),
            pytest.param(
                v1.SearchNode(
                    term=v1.SearchTerm(
                        field=v1.SearchField.ASSIGNEE,
                        op=v1.SearchOperator.LT,
                        values=[v1.SearchValue(text="u")],
                    )
                ),
                "op",
                id="comparison-on-user",
            ),
            pytest.param(
                v1.SearchNode(
                    term=v1.SearchTerm(
                        field=v1.SearchField.ASSIGNEE,
                        op=v1.SearchOperator.ANY,
                        values=[v1.SearchValue(text="u")],
                    )
                ),
                "values",
                id="any-with-values",
            ),
            pytest.param(
                v1.SearchNode(
                    term=v1.SearchTerm(
                        field=v1.SearchField.TITLE,
                        op=v1.SearchOperator.EQ,
                        values=[v1.SearchValue(integer=1)],
                    )
                ),
                "values[0]",
                id="integer-for-text",
            ),
            pytest.param(
                v1.SearchNode(
                    term=v1.SearchTerm(field=v1.SearchField.ID, op=v1.SearchOperator.EQ, values=[])
                ),
                "values",
                id="no-values",
            ),
            pytest.param(
                v1.SearchNode(
                    term=v1.SearchTerm(
                        field=v1.SearchField(99),
                        op=v1.SearchOperator.EQ,
                        values=[v1.SearchValue(text="x")],
                    )
                ),
                "field",
                id="unknown-field",
            ),
            pytest.param(
                v1.SearchNode(
                    term=v1.SearchTerm(
                        field=v1.SearchField.TYPE,
                        op=v1.SearchOperator.EQ,
                        values=[v1.SearchValue(text="BUG")],
                        include_subtree=True,
                    )
                ),
                "include_subtree",
                id="subtree-off-component",
            ),
        ],
    )
    async def test_bad_search_term_is_invalid_argument_naming_where(
        self, model: v1.ModelStub, node: v1.SearchNode, named: str
    ) -> None:
        await expect_error(search_page(model, node), Status.INVALID_ARGUMENT, "query.filter", named)
