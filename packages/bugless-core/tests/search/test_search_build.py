"""Building structured queries in code: the one builder code and tests share."""

from __future__ import annotations

import datetime

from bugless_core.model._validation import check_query
from bugless_core.search.build import all_of, any_of, negate, search_value, term
from bugless_proto import v1

F = v1.SearchField
Op = v1.SearchOperator
T0 = datetime.datetime(2026, 1, 31, tzinfo=datetime.UTC)


def test_a_value_takes_the_kind_of_its_python_type() -> None:
    assert search_value("FIXED") == v1.SearchValue(text="FIXED")
    assert search_value(7) == v1.SearchValue(integer=7)
    assert search_value(T0) == v1.SearchValue(time=T0)


def test_a_term_carries_its_field_operator_values_and_flags() -> None:
    node = term(F.COMPONENT, Op.EQ, 3, 4, include_subtree=True)
    assert node == v1.SearchNode(
        term=v1.SearchTerm(
            field=F.COMPONENT,
            op=Op.EQ,
            values=[v1.SearchValue(integer=3), v1.SearchValue(integer=4)],
            include_subtree=True,
        )
    )
    phrase = term(F.TITLE, Op.EQ, "disk full", phrase=True)
    assert phrase.term is not None
    assert phrase.term.phrase
    assert term(F.ASSIGNEE, Op.NONE).term == v1.SearchTerm(field=F.ASSIGNEE, op=Op.NONE)


def test_connectives_nest_nodes_as_the_proto_does() -> None:
    a, b = term(F.ID, Op.EQ, 1), term(F.ID, Op.EQ, 2)
    assert all_of(a, b) == v1.SearchNode(all_of=v1.SearchNodeList(nodes=[a, b]))
    assert any_of(a, b) == v1.SearchNode(any_of=v1.SearchNodeList(nodes=[a, b]))
    assert negate(a) == v1.SearchNode(negate=a)


def test_a_built_query_passes_the_models_checks() -> None:
    check_query(
        v1.StructuredQuery(
            filter=all_of(
                term(F.STATUS_CLASS, Op.EQ, "open"),
                negate(term(F.ASSIGNEE, Op.NONE)),
                any_of(term(F.PRIORITY, Op.LT, 2), term(F.CREATED, Op.GE, T0)),
            )
        ),
        "query",
    )
