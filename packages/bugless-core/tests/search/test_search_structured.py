"""to_structured: what the Model receives, with users, me and dates resolved."""

from __future__ import annotations

from datetime import UTC, date, datetime

import betterproto2
import pytest

from bugless_core.search import (
    Field,
    FieldTerm,
    Operator,
    Query,
    QuerySyntaxError,
    UserValue,
    format_query,
    parse_query,
    to_structured,
    user_terms,
)
from bugless_proto import v1

TODAY = date(2026, 3, 10)
USERS = {"bob": "u-bob", "alice": "u-alice"}


def structured(text: str, *, me: str | None = "u-me") -> v1.StructuredQuery:
    return to_structured(parse_query(text), me=me, users=USERS, today=TODAY)


def filter_of(text: str, *, me: str | None = "u-me") -> v1.SearchNode:
    node = structured(text, me=me).filter
    assert node is not None
    return node


def term(
    field: v1.SearchField,
    op: v1.SearchOperator,
    *values: v1.SearchValue,
    include_subtree: bool = False,
    phrase: bool = False,
) -> v1.SearchNode:
    return v1.SearchNode(
        term=v1.SearchTerm(
            field=field,
            op=op,
            values=list(values),
            include_subtree=include_subtree,
            phrase=phrase,
        )
    )


def text(value: str) -> v1.SearchValue:
    return v1.SearchValue(text=value)


def integer(value: int) -> v1.SearchValue:
    return v1.SearchValue(integer=value)


def at(year: int, month: int, day: int, hour: int = 0) -> v1.SearchValue:
    return v1.SearchValue(time=datetime(year, month, day, hour, tzinfo=UTC))


def all_of(*nodes: v1.SearchNode) -> v1.SearchNode:
    return v1.SearchNode(all_of=v1.SearchNodeList(nodes=list(nodes)))


def any_of(*nodes: v1.SearchNode) -> v1.SearchNode:
    return v1.SearchNode(any_of=v1.SearchNodeList(nodes=list(nodes)))


F, OP = v1.SearchField, v1.SearchOperator


def test_empty_query_has_no_filter_and_no_order() -> None:
    assert structured("") == v1.StructuredQuery()
    assert structured("").filter is None


def test_design_example() -> None:
    assert filter_of('is:open p<p2 -assignee:none "disk full" (c:123+ OR h:7)') == all_of(
        term(F.STATUS_CLASS, OP.EQ, text("open")),
        term(F.PRIORITY, OP.LT, integer(2)),
        v1.SearchNode(negate=term(F.ASSIGNEE, OP.NONE)),
        term(F.TEXT, OP.EQ, text("disk full"), phrase=True),
        any_of(
            term(F.COMPONENT, OP.EQ, integer(123), include_subtree=True),
            term(F.HOTLIST, OP.EQ, integer(7)),
        ),
    )


def test_oneof_kinds_are_set() -> None:
    node = filter_of("a OR b")
    assert betterproto2.which_one_of(node, "kind")[0] == "any_of"


def test_users_and_me_become_opaque_ids() -> None:
    assert filter_of("a:me,bob cc:alice") == all_of(
        term(F.ASSIGNEE, OP.EQ, text("u-me"), text("u-bob")),
        term(F.CC, OP.EQ, text("u-alice")),
    )


def test_a_user_matches_the_placeholders_merged_into_them_too() -> None:
    merged = {"u-bob": ["u-old-bob", "u-older-bob"]}
    query = parse_query("reporter:bob,alice -commenter:bob")
    node = to_structured(query, me=None, users=USERS, today=TODAY, merged=merged).filter
    assert node == all_of(
        term(F.REPORTER, OP.EQ, *map(text, ["u-bob", "u-alice", "u-old-bob", "u-older-bob"])),
        v1.SearchNode(
            negate=term(F.COMMENTER, OP.EQ, *map(text, ["u-bob", "u-old-bob", "u-older-bob"]))
        ),
    )


def test_me_needs_a_signed_in_caller() -> None:
    with pytest.raises(QuerySyntaxError) as info:
        structured("x a:me", me=None)
    assert info.value.problem == "sign in to use 'me'"
    assert (info.value.position, info.value.length) == (4, 2)


def test_unknown_username_is_positioned() -> None:
    with pytest.raises(QuerySyntaxError) as info:
        structured("a:alice,carol")
    assert info.value.problem == "no user named 'carol'"
    assert (info.value.position, info.value.length) == (8, 5)
    assert info.value.query == "a:alice,carol"


def test_unknown_username_in_a_built_tree_points_into_its_canonical_text() -> None:
    query = Query(FieldTerm(Field.VERIFIER, Operator.EQ, (UserValue("carol"),)))
    with pytest.raises(QuerySyntaxError) as info:
        to_structured(query, me=None, users=USERS, today=TODAY)
    assert info.value.query == "verifier:carol"
    assert (info.value.position, info.value.length) == (9, 5)


def test_user_terms_lists_usernames_but_not_me() -> None:
    query = parse_query("a:me,bob (r:carol OR -cc:bob) v:none sort:id")
    assert user_terms(query) == {"bob", "carol"}
    assert user_terms(parse_query("")) == set()


def test_status_and_type_names_are_proto_enum_names() -> None:
    assert filter_of("is:fixed,wont_fix_obsolete t:feature_request") == all_of(
        term(F.STATUS, OP.EQ, text("FIXED"), text("WONT_FIX_OBSOLETE")),
        term(F.TYPE, OP.EQ, text("FEATURE_REQUEST")),
    )
    assert v1.Status.FIXED.name == "FIXED"
    assert v1.IssueType.FEATURE_REQUEST.name == "FEATURE_REQUEST"


def test_status_class_values_are_lower_case() -> None:
    assert filter_of("is:closed") == term(F.STATUS_CLASS, OP.EQ, text("closed"))


def test_levels_and_ids_are_integers() -> None:
    assert filter_of("p:p0,p1 s>=s3 id:42 parentid:any") == all_of(
        term(F.PRIORITY, OP.EQ, integer(0), integer(1)),
        term(F.SEVERITY, OP.GE, integer(3)),
        term(F.ID, OP.EQ, integer(42)),
        term(F.PARENT, OP.ANY),
    )


def test_text_fields() -> None:
    assert filter_of('crash title:disk comment:"out of space"') == all_of(
        term(F.TEXT, OP.EQ, text("crash")),
        term(F.TITLE, OP.EQ, text("disk")),
        term(F.COMMENT, OP.EQ, text("out of space"), phrase=True),
    )


def test_relative_date_comparison_is_against_midnight_utc() -> None:
    assert filter_of("created>today-7") == term(F.CREATED, OP.GT, at(2026, 3, 3))
    assert filter_of("modified<=today") == term(F.MODIFIED, OP.LE, at(2026, 3, 10))


def test_absolute_date_and_time_comparisons() -> None:
    assert filter_of("created>=2026-01-01") == term(F.CREATED, OP.GE, at(2026, 1, 1))
    assert filter_of("created<2026-01-01T10:00:00+02:00") == term(
        F.CREATED, OP.LT, at(2026, 1, 1, 8)
    )


def test_date_equality_means_the_whole_day() -> None:
    assert filter_of("created:2026-01-02") == all_of(
        term(F.CREATED, OP.GE, at(2026, 1, 2)), term(F.CREATED, OP.LT, at(2026, 1, 3))
    )
    assert filter_of("modified:today") == all_of(
        term(F.MODIFIED, OP.GE, at(2026, 3, 10)), term(F.MODIFIED, OP.LT, at(2026, 3, 11))
    )


def test_date_equality_lists_become_any_of_and_instants_stay_exact() -> None:
    assert filter_of("created:2026-01-02,2026-01-01T10:00:00Z,today-1") == any_of(
        all_of(term(F.CREATED, OP.GE, at(2026, 1, 2)), term(F.CREATED, OP.LT, at(2026, 1, 3))),
        all_of(term(F.CREATED, OP.GE, at(2026, 3, 9)), term(F.CREATED, OP.LT, at(2026, 3, 10))),
        term(F.CREATED, OP.EQ, at(2026, 1, 1, 10)),
    )


def test_last_day_of_the_calendar_has_no_next_midnight() -> None:
    assert filter_of("created:9999-12-31") == term(F.CREATED, OP.GE, at(9999, 12, 31))


def test_relative_date_before_year_one_is_a_positioned_error() -> None:
    with pytest.raises(QuerySyntaxError) as info:
        to_structured(parse_query("created>today-999999"), me=None, users={}, today=date(2, 1, 1))
    assert info.value.position == 8
    assert "before the year 1" in info.value.problem


def test_today_may_be_given_as_a_datetime() -> None:
    query = parse_query("created>today")
    result = to_structured(query, me=None, users={}, today=datetime(2026, 3, 10, 23, tzinfo=UTC))
    assert result.filter == term(F.CREATED, OP.GT, at(2026, 3, 10))


def test_sort_keys() -> None:
    assert structured("sort:priority,-modified,s,-id,title,status,created").order_by == [
        v1.SortKey(field=v1.SortField.PRIORITY),
        v1.SortKey(field=v1.SortField.MODIFIED, descending=True),
        v1.SortKey(field=v1.SortField.SEVERITY),
        v1.SortKey(field=v1.SortField.ID, descending=True),
        v1.SortKey(field=v1.SortField.TITLE),
        v1.SortKey(field=v1.SortField.STATUS),
        v1.SortKey(field=v1.SortField.CREATED),
    ]


def test_result_survives_the_wire() -> None:
    message = structured('is:open a:me created:today -"x y" sort:-p')
    assert v1.StructuredQuery.parse(bytes(message)) == message


def test_an_external_reference_is_matched_as_one_exact_value() -> None:
    query = to_structured(
        parse_query('externalid:"github:org/repo#56"'), me=None, users={}, today=date(2026, 1, 1)
    )
    assert query.filter is not None
    term = query.filter.term
    assert term is not None
    assert term.field is v1.SearchField.EXTERNAL_ID
    assert [v.text for v in term.values] == ["github:org/repo#56"]
    text = 'externalid:"github:org/repo#56"'
    assert format_query(parse_query(text)) == text
