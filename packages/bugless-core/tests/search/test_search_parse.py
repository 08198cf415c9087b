"""Example-based tests of parse_query: one construct, alias and value form at a time."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from bugless_core.search import (
    And,
    DateValue,
    EnumValue,
    Field,
    FieldTerm,
    IntValue,
    Not,
    Operator,
    Or,
    Query,
    RelativeDateValue,
    SortField,
    SortSpec,
    Span,
    TextField,
    TextTerm,
    TimestampValue,
    UserValue,
    Value,
    format_query,
    parse_query,
)


def term(field: Field, op: Operator, *values: Value, subtree: bool = False) -> FieldTerm:
    return FieldTerm(field, op, tuple(values), subtree)


def eq(field: Field, *values: Value) -> FieldTerm:
    return term(field, Operator.EQ, *values)


def word(text: str) -> TextTerm:
    return TextTerm(text)


def only(text: str) -> object:
    """The filter of a query that must have no sort."""
    query = parse_query(text)
    assert query.sort == ()
    return query.filter


def test_the_design_example_parses_to_the_expected_tree() -> None:
    query = parse_query('is:open p<p2 -assignee:none "disk full" (c:123+ OR h:7)')
    assert query == Query(
        And(
            (
                eq(Field.STATUS_CLASS, EnumValue("open")),
                term(Field.PRIORITY, Operator.LT, IntValue(2)),
                Not(term(Field.ASSIGNEE, Operator.NONE)),
                TextTerm("disk full", phrase=True),
                Or(
                    (
                        term(Field.COMPONENT, Operator.EQ, IntValue(123), subtree=True),
                        eq(Field.HOTLIST, IntValue(7)),
                    )
                ),
            )
        )
    )


@pytest.mark.parametrize("text", ["", "   ", "\t\n "])
def test_empty_query_matches_everything(text: str) -> None:
    assert parse_query(text) == Query(filter=None, sort=())


def test_free_words_are_anded_text_terms() -> None:
    assert only("disk full crash") == And((word("disk"), word("full"), word("crash")))


def test_single_word_is_not_wrapped_in_and() -> None:
    assert only("crash") == word("crash")


def test_quoted_phrase_is_a_phrase_text_term() -> None:
    assert only('"disk full"') == TextTerm("disk full", phrase=True)


def test_phrase_escapes_quote_and_backslash_only() -> None:
    assert only(r'"say \"hi\" in C:\temp\\"') == TextTerm('say "hi" in C:\\temp\\', phrase=True)


def test_words_keep_their_case_and_inner_punctuation() -> None:
    assert only("Foo-Bar C++ a.b,c") == And((word("Foo-Bar"), word("C++"), word("a.b,c")))


def test_lowercase_or_is_a_word() -> None:
    assert only("a or b") == And((word("a"), word("or"), word("b")))


def test_and_and_not_are_words_when_quoted_or_not_in_capitals() -> None:
    assert only('"AND" and "NOT" not') == And(
        (TextTerm("AND", phrase=True), word("and"), TextTerm("NOT", phrase=True), word("not"))
    )
    assert format_query(parse_query('"AND" "NOT"')) == '"AND" "NOT"'


def test_or_has_lower_precedence_than_implicit_and() -> None:
    assert only("a b OR c d") == Or((And((word("a"), word("b"))), And((word("c"), word("d")))))


def test_or_chains_are_one_node() -> None:
    assert only("a OR b OR c") == Or((word("a"), word("b"), word("c")))


def test_parentheses_group_and_single_term_groups_vanish() -> None:
    assert only("(a OR b) c") == And((Or((word("a"), word("b"))), word("c")))
    assert only("((a))") == word("a")


def test_explicit_nested_groups_are_kept() -> None:
    assert only("(a b) c") == And((And((word("a"), word("b"))), word("c")))


def test_negation_of_term_phrase_and_group() -> None:
    assert only("-a") == Not(word("a"))
    assert only('-"a b"') == Not(TextTerm("a b", phrase=True))
    assert only("-(a OR b)") == Not(Or((word("a"), word("b"))))
    assert only("--a") == Not(Not(word("a")))


def test_dash_inside_a_word_is_not_negation() -> None:
    assert only("well-known") == word("well-known")


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("assignee", Field.ASSIGNEE),
        ("a", Field.ASSIGNEE),
        ("reporter", Field.REPORTER),
        ("r", Field.REPORTER),
        ("cc", Field.CC),
        ("verifier", Field.VERIFIER),
        ("v", Field.VERIFIER),
        ("ASSIGNEE", Field.ASSIGNEE),
    ],
)
def test_user_fields_and_aliases(name: str, field: Field) -> None:
    assert only(f"{name}:bob") == eq(field, UserValue("bob"))


@pytest.mark.parametrize("text", ["me", "ME", "Me"])
def test_me_is_case_insensitive(text: str) -> None:
    assert only(f"a:{text}") == eq(Field.ASSIGNEE, UserValue("me"))


def test_usernames_may_look_like_emails() -> None:
    assert only("cc:bob.smith+x@example.com") == eq(Field.CC, UserValue("bob.smith+x@example.com"))


@pytest.mark.parametrize(("value", "op"), [("none", Operator.NONE), ("ANY", Operator.ANY)])
def test_none_and_any_are_operators(value: str, op: Operator) -> None:
    assert only(f"assignee:{value}") == term(Field.ASSIGNEE, op)


def test_has_is_any_and_negated_has_is_not_any() -> None:
    assert only("has:verifier") == term(Field.VERIFIER, Operator.ANY)
    assert only("has:a") == term(Field.ASSIGNEE, Operator.ANY)
    assert only("-has:cc") == Not(term(Field.CC, Operator.ANY))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("is:fixed", eq(Field.STATUS, EnumValue("fixed"))),
        ("status:Fixed", eq(Field.STATUS, EnumValue("fixed"))),
        ("is:wont_fix_obsolete", eq(Field.STATUS, EnumValue("wont_fix_obsolete"))),
        ("is:wont-fix-obsolete", eq(Field.STATUS, EnumValue("wont_fix_obsolete"))),
        ("status:new,assigned", eq(Field.STATUS, EnumValue("new"), EnumValue("assigned"))),
        ("is:open", eq(Field.STATUS_CLASS, EnumValue("open"))),
        ("is:CLOSED", eq(Field.STATUS_CLASS, EnumValue("closed"))),
        ("status:open", eq(Field.STATUS_CLASS, EnumValue("open"))),
    ],
)
def test_status_and_status_class(text: str, expected: FieldTerm) -> None:
    assert only(text) == expected


@pytest.mark.parametrize("name", ["priority", "p", "P"])
def test_priority_levels_are_integers(name: str) -> None:
    assert only(f"{name}:p0,P1,4") == eq(Field.PRIORITY, IntValue(0), IntValue(1), IntValue(4))


@pytest.mark.parametrize("name", ["severity", "s"])
def test_severity_levels_are_integers(name: str) -> None:
    assert only(f"{name}:s3") == eq(Field.SEVERITY, IntValue(3))


@pytest.mark.parametrize("name", ["type", "t"])
def test_issue_types(name: str) -> None:
    assert only(f"{name}:bug,Feature_Request") == eq(
        Field.TYPE, EnumValue("bug"), EnumValue("feature_request")
    )


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("componentid", Field.COMPONENT),
        ("c", Field.COMPONENT),
        ("hotlistid", Field.HOTLIST),
        ("h", Field.HOTLIST),
        ("id", Field.ID),
        ("blockingid", Field.BLOCKING),
        ("blockedbyid", Field.BLOCKED_BY),
        ("parentid", Field.PARENT),
        ("canonicalid", Field.CANONICAL),
    ],
)
def test_integer_fields_and_aliases(name: str, field: Field) -> None:
    assert only(f"{name}:12,0034") == eq(field, IntValue(12), IntValue(34))


def test_component_plus_means_subtree_for_the_whole_list() -> None:
    assert only("c:1+,2+") == term(
        Field.COMPONENT, Operator.EQ, IntValue(1), IntValue(2), subtree=True
    )


@pytest.mark.parametrize(
    ("text", "field"), [("title", TextField.TITLE), ("comment", TextField.COMMENT)]
)
def test_text_fields_take_words_and_phrases(text: str, field: TextField) -> None:
    assert only(f"{text}:crash") == TextTerm("crash", field=field)
    assert only(f'{text}:"disk full"') == TextTerm("disk full", phrase=True, field=field)


def test_text_field_values_are_literal_text() -> None:
    assert only("title:none") == TextTerm("none", field=TextField.TITLE)
    assert only("title:a,b:c") == TextTerm("a,b:c", field=TextField.TITLE)


@pytest.mark.parametrize(
    ("symbol", "op"),
    [
        (":", Operator.EQ),
        ("=", Operator.EQ),
        ("<", Operator.LT),
        ("<=", Operator.LE),
        (">", Operator.GT),
        (">=", Operator.GE),
    ],
)
def test_operators(symbol: str, op: Operator) -> None:
    assert only(f"p{symbol}p2") == term(Field.PRIORITY, op, IntValue(2))


def test_comparisons_on_ids() -> None:
    assert only("id>=100 blockingid<5") == And(
        (term(Field.ID, Operator.GE, IntValue(100)), term(Field.BLOCKING, Operator.LT, IntValue(5)))
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-01-01", DateValue(date(2026, 1, 1))),
        ("today", RelativeDateValue(0)),
        ("TODAY-7", RelativeDateValue(7)),
        ("today-0", RelativeDateValue(0)),
        ("2026-01-01T10:00:00Z", TimestampValue(datetime(2026, 1, 1, 10, tzinfo=UTC))),
        ("2026-01-01t10:00z", TimestampValue(datetime(2026, 1, 1, 10, tzinfo=UTC))),
        ("2026-01-01T10:00:00", TimestampValue(datetime(2026, 1, 1, 10, tzinfo=UTC))),
        (
            "2026-01-01T12:30:00.5+02:00",
            TimestampValue(datetime(2026, 1, 1, 10, 30, 0, 500000, tzinfo=UTC)),
        ),
    ],
)
def test_date_values(value: str, expected: Value) -> None:
    assert only(f"created>{value}") == term(Field.CREATED, Operator.GT, expected)


def test_timestamps_are_normalised_to_utc() -> None:
    filter_ = only("modified<2026-01-01T12:00:00+02:00")
    assert isinstance(filter_, FieldTerm)
    value = filter_.values[0]
    assert isinstance(value, TimestampValue)
    assert value.at.utcoffset() == timedelta(0)
    assert value.at == datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))


def test_sort_keys_with_direction_and_aliases() -> None:
    assert parse_query("sort:priority,-modified").sort == (
        SortSpec(SortField.PRIORITY),
        SortSpec(SortField.MODIFIED, descending=True),
    )
    assert parse_query("sort:-p,s").sort == (
        SortSpec(SortField.PRIORITY, descending=True),
        SortSpec(SortField.SEVERITY),
    )


def test_sort_may_appear_anywhere_at_top_level() -> None:
    expected = Query(And((word("a"), word("b"))), (SortSpec(SortField.ID),))
    assert parse_query("sort:id a b") == expected
    assert parse_query("a sort:id b") == expected
    assert parse_query("a b sort:id") == expected


def test_sort_beside_or_applies_to_the_whole_query() -> None:
    assert parse_query("a OR b sort:title") == Query(
        Or((word("a"), word("b"))), (SortSpec(SortField.TITLE),)
    )


def test_sort_alone_has_no_filter() -> None:
    assert parse_query("sort:-created") == Query(None, (SortSpec(SortField.CREATED, True),))


def test_nodes_record_where_they_came_from() -> None:
    query = parse_query("a:bob  -(x OR y)")
    assert isinstance(query.filter, And)
    first, second = query.filter.children
    assert first.span == Span(0, 5)
    assert isinstance(first, FieldTerm)
    assert first.values[0].span == Span(2, 5)
    assert second.span == Span(7, 16)
    assert query.source == "a:bob  -(x OR y)"


def test_spans_do_not_take_part_in_equality() -> None:
    assert parse_query("  a  ") == parse_query("a")
