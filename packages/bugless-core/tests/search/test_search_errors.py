"""Every way a query can be wrong is a QuerySyntaxError that says where and what."""

from __future__ import annotations

import pytest

from bugless_core.errors import InvalidArgument
from bugless_core.search import MAX_NESTING, QuerySyntaxError, parse_query


def error_of(text: str) -> QuerySyntaxError:
    with pytest.raises(QuerySyntaxError) as info:
        parse_query(text)
    return info.value


@pytest.mark.parametrize(
    ("text", "position", "length", "problem"),
    [
        # lexical
        ('a "disk full', 2, 10, "unterminated quote"),
        ('"a"b', 3, 1, "expected a space after the closing"),
        ('ab"c"', 2, 1, "unexpected '\"' inside a word"),
        ('title:ab"c"', 8, 1, "unexpected '\"' inside a value"),
        (":x", 0, 1, "expected a field name before ':'"),
        ("a >=3", 2, 2, "expected a field name before '>='"),
        ("status:", 7, 1, "expected a value after 'status:'"),
        ("p<= x", 3, 1, "expected a value after 'p<='"),
        ("(status:)", 8, 1, "expected a value after 'status:'"),
        # structure
        ("(a", 0, 1, "'(' is never closed"),
        ("(a (b)", 0, 1, "'(' is never closed"),
        ("a)", 1, 1, "unexpected ')'"),
        ("()", 0, 2, "expected a term inside '()'"),
        ("OR a", 0, 2, "expected a term before 'OR'"),
        ("a OR", 2, 2, "expected a term after 'OR'"),
        ("a OR OR b", 2, 2, "expected a term after 'OR'"),
        ("(a OR) b", 3, 2, "expected a term after 'OR'"),
        # operators of other languages, bare and in capitals (quoted, they are words)
        ("is:open AND p:p0", 8, 3, "'AND' is not an operator here: terms side by side must all"),
        ("a AND", 2, 3, 'to search for the word, quote it: "AND"'),
        ("NOT is:open", 0, 3, "put '-' before it, as in -status:fixed"),
        ("(a OR NOT b)", 6, 3, "'NOT' is not an operator here"),
        ("a -", 2, 1, "expected a term after '-'"),
        ("-OR a", 0, 1, "expected a term after '-'"),
        ("(-)", 1, 1, "expected a term after '-'"),
        ('""', 0, 2, "expected some text inside the quotes"),
        ('title:"  "', 6, 4, "expected some text inside the quotes"),
        # fields
        ("asignee:bob", 0, 7, "unknown field 'asignee'; did you mean 'assignee'?"),
        ("x stauts:fixed", 2, 6, "did you mean 'status'"),
        ("http://example.com", 0, 4, "unknown field 'http'; to search for the text itself"),
        ("srot:id", 0, 4, "did you mean 'sort'?"),
        # values
        ("p:p5", 2, 2, "expected a priority p0..p4"),
        ("p:s1", 2, 2, "expected a priority p0..p4"),
        ("s:p1", 2, 2, "expected a severity s0..s4"),
        ("status:fixd", 7, 4, "unknown status 'fixd'; did you mean 'fixed'?"),
        ("is:opn", 3, 3, "did you mean 'open'?"),
        ("t:bgu", 2, 3, "unknown type 'bgu'; did you mean 'bug'?"),
        ("t:zzz", 2, 3, "expected one of 'bug', 'feature_request'"),
        ("is:open,fixed", 8, 5, "'open'/'closed' and status names cannot share a list"),
        ("a:bob,,alice", 5, 1, "expected a value after ','"),
        ("a:,bob", 2, 1, "expected a value before ','"),
        ("a:bob,", 5, 1, "expected a value after ','"),
        ("a:(bob)", 2, 1, "expected a value after 'a:'"),
        ("a:b!b", 2, 3, "expected a username, 'me', 'none' or 'any'"),
        ("id:12x", 3, 3, "expected a number for 'id'"),
        ("id:-1", 3, 2, "expected a number for 'id'"),
        ("id:99999999999999999999", 3, 20, "too large"),
        ("c:1+,2", 5, 1, "mark every component in the list with '+'"),
        ("component:Rocket>", 10, 7, "expected a name on each side of '>'"),
        ('title:"x"+', 9, 1, "'+' (subtree) goes with componentid, component and parentid only"),
        ("componet:x", 0, 8, "did you mean 'component', 'componentid' or 'comment'"),
        ("created:yesterday", 8, 9, "expected a date (2026-01-31)"),
        ("created>2026-02-30", 8, 10, "is not a valid date or time"),
        ("created>2026-01-01T25:00", 8, 16, "is not a valid date or time"),
        ("modified>today-9999999", 9, 13, "too far back"),
        # operators and null words
        ("assignee<bob", 8, 1, "'assignee' cannot be compared with '<'"),
        ("title>=x", 5, 2, "'title' cannot be compared with '>='"),
        ("c>3", 1, 1, "'c' cannot be compared"),
        ("p<p1,p2", 5, 2, "'<' compares with one value, not a list"),
        ("a:none,bob", 2, 4, "'none' cannot be combined with other values"),
        ("p:none", 2, 4, "'p' always has a value, so 'none' does not apply"),
        ("p<any", 1, 1, "'any' takes ':', not '<'"),
        ("has:title", 4, 5, "has: does not apply to 'title'"),
        ("has:status", 4, 6, "has: does not apply to 'status'"),
        ("has:asignee", 4, 7, "did you mean 'assignee'?"),
        ("has<cc", 3, 1, "has takes ':'"),
        # sort
        ("sort:prio", 5, 4, "unknown sort key 'prio'; did you mean 'priority'?"),
        ("sort:zz", 5, 2, "expected 'id', 'created'"),
        ("sort:id,-id", 8, 3, "sort key 'id' is given twice"),
        ("sort:id a sort:title", 10, 10, "sort: may appear only once"),
        ("(a sort:id)", 3, 7, "put it outside the parentheses"),
        ("-sort:id", 1, 7, "sort: cannot be negated"),
        ("sort<id", 4, 1, "sort takes ':'"),
        ("sort:id,-", 8, 1, "expected a sort key after '-'"),
        ("sort:id OR a", 0, 7, "sort: is not a term, so it cannot be one side of OR"),
        ("a OR sort:id", 5, 7, "sort: is not a term, so it cannot be one side of OR"),
        ("a OR b OR sort:id", 10, 7, "sort: is not a term"),
    ],
)
def test_error_position_and_message(text: str, position: int, length: int, problem: str) -> None:
    error = error_of(text)
    assert problem in error.problem
    assert (error.position, error.length) == (position, length), error.render_caret()
    assert error.message == f"at column {position + 1}: {error.problem}"


def test_error_is_an_invalid_argument_with_position_metadata() -> None:
    error = error_of("status:")
    assert isinstance(error, InvalidArgument)
    assert error.reason == "QUERY_SYNTAX"
    assert error.metadata == {"position": "7", "length": "1"}
    assert error.query == "status:"
    assert error.message == "at column 8: expected a value after 'status:'"


def test_render_caret_points_under_the_fault() -> None:
    rendered = error_of("is:open asignee:me").render_caret()
    assert rendered.splitlines() == ["is:open asignee:me", "        ^^^^^^^"]


def test_render_caret_after_the_end() -> None:
    assert error_of("p:").render_caret() == "p:\n  ^"


def test_render_caret_shows_only_the_faulty_line_and_blanks_tabs() -> None:
    rendered = error_of("a\tb\nc\t(d").render_caret()
    assert rendered == "c (d\n  ^"


def test_render_caret_counts_wide_characters_twice() -> None:
    assert error_of("日本 x)").render_caret() == "日本 x)\n      ^"


def test_too_deep_nesting_is_a_syntax_error_not_a_crash() -> None:
    error = error_of("(" * (MAX_NESTING + 1) + "a" + ")" * (MAX_NESTING + 1))
    assert "nests too deeply" in error.problem
    assert error.position == MAX_NESTING
    error = error_of("-" * 5000 + "a")
    assert "nests too deeply" in error.problem


def test_nesting_up_to_the_limit_is_fine() -> None:
    assert parse_query("(" * MAX_NESTING + "a" + ")" * MAX_NESTING).filter is not None


def test_huge_numbers_do_not_hit_the_int_digit_limit() -> None:
    assert "too large" in error_of("id:" + "9" * 5000).problem
    assert parse_query("id:" + "0" * 5000 + "1").filter is not None
