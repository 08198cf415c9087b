"""Stars in the search language (issue 16): ``is:starred``, ``star:``, ``sort:stars``."""

from __future__ import annotations

from datetime import date

import pytest

from bugless_core.search import (
    Field,
    FieldTerm,
    Not,
    Operator,
    QuerySyntaxError,
    SortField,
    SortSpec,
    UserValue,
    format_query,
    parse_query,
    to_structured,
)
from bugless_proto import v1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("is:starred", FieldTerm(Field.STARRED_BY, Operator.EQ, (UserValue("me"),))),
        ("IS:Starred", FieldTerm(Field.STARRED_BY, Operator.EQ, (UserValue("me"),))),
        ("star:me", FieldTerm(Field.STARRED_BY, Operator.EQ, (UserValue("me"),))),
        ("starredby:ann", FieldTerm(Field.STARRED_BY, Operator.EQ, (UserValue("ann"),))),
        ("-is:starred", Not(FieldTerm(Field.STARRED_BY, Operator.EQ, (UserValue("me"),)))),
        ("has:star", FieldTerm(Field.STARRED_BY, Operator.ANY)),
    ],
)
def test_star_terms(text: str, expected: object) -> None:
    assert parse_query(text).filter == expected


def test_is_starred_prints_as_star_me_and_parses_back() -> None:
    query = parse_query("is:starred is:open")
    assert parse_query(format_query(query)) == query
    assert "star:me" in format_query(query)


def test_sort_by_stars_reaches_the_model_as_the_stars_key() -> None:
    query = parse_query("sort:-stars")
    assert query.sort == (SortSpec(SortField.STARS, True),)
    structured = to_structured(query, me="u-me", users={}, today=date(2026, 3, 10))
    assert structured.order_by[0] == v1.SortKey(field=v1.SortField.STARS, descending=True)


def test_starred_in_a_status_list_is_refused_with_a_hint() -> None:
    with pytest.raises(QuerySyntaxError, match="use OR"):
        parse_query("is:starred,open")
