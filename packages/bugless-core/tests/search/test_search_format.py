"""format_query writes canonical text; explain and query_to_json show the tree."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime

import pytest

from bugless_core.search import (
    And,
    CustomFieldTerm,
    DateValue,
    Field,
    FieldTerm,
    IntValue,
    Not,
    Operator,
    Or,
    Query,
    SortField,
    SortSpec,
    TextField,
    TextTerm,
    TimestampValue,
    UserValue,
    explain,
    format_query,
    parse_query,
    query_to_json,
)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("", ""),
        ("a:me r:bob v:none cc:any", "assignee:me reporter:bob verifier:none cc:any"),
        ("has:a -has:h", "assignee:any -hotlistid:any"),
        ("P=P1,3 s>=S2", "priority:p1,p3 severity>=s2"),
        ("is:Open status:FIXED t:Feature-Request", "is:open status:fixed type:feature_request"),
        ("c:5+ h:1 id<9", "componentid:5+ hotlistid:1 id<9"),
        ("created>TODAY-0 modified<today-7", "created>today modified<today-7"),
        ("created:2026-01-02T03:04:05+01:00", "created:2026-01-02T02:04:05Z"),
        ("a  b   OR c", "a b OR c"),
        ("((a OR b)) c", "(a OR b) c"),
        ("(a b) c", "(a b) c"),
        ("(a OR b) OR c", "(a OR b) OR c"),
        ("-(a) --b", "-a -(-b)"),
        ('title:"x y" comment:z', 'title:"x y" comment:z'),
        ("sort:p,-modified x", "x sort:priority,-modified"),
    ],
)
def test_format_is_canonical(text: str, canonical: str) -> None:
    query = parse_query(text)
    assert format_query(query) == canonical
    assert parse_query(canonical) == query


def test_phrases_are_escaped_so_they_read_back() -> None:
    query = Query(TextTerm('a "b" \\ c', phrase=True))
    assert format_query(query) == r'"a \"b\" \\ c"'
    assert parse_query(format_query(query)) == query


@pytest.mark.parametrize(
    ("op", "value", "text"),
    [
        (Operator.LT, "=", 'customfield7<"="'),
        (Operator.LT, "=x", 'customfield7<"=x"'),
        (Operator.GT, "==", 'customfield7>"=="'),
        (Operator.LE, "=x", "customfield7<==x"),
        (Operator.LT, "x=", "customfield7<x="),
    ],
)
def test_a_custom_value_that_would_join_the_operator_is_quoted(
    op: Operator, value: str, text: str
) -> None:
    # Unquoted, "<=x" reads back as "at most x" (hypothesis found "<==").
    query = Query(CustomFieldTerm(op, (value,), 7))
    assert format_query(query) == text
    assert parse_query(text) == query


def test_built_trees_print_with_needed_parentheses() -> None:
    a, b, c = TextTerm("a"), TextTerm("b"), TextTerm("c")
    assert format_query(Query(Or((And((a, b)), c)))) == "a b OR c"
    assert format_query(Query(And((Or((a, b)), c)))) == "(a OR b) c"
    assert format_query(Query(Not(And((a, b))))) == "-(a b)"


@pytest.mark.parametrize(
    "build",
    [
        lambda: And((TextTerm("a"),)),
        lambda: Or(()),
        lambda: TextTerm("two words"),
        lambda: TextTerm("a:b"),
        lambda: TextTerm("-a"),
        lambda: TextTerm("OR"),
        lambda: TextTerm("AND"),
        lambda: TextTerm("NOT"),
        lambda: TextTerm("  ", phrase=True),
        lambda: TextTerm("x(y", field=TextField.TITLE),
        lambda: FieldTerm(Field.PRIORITY, Operator.EQ, (IntValue(5),)),
        lambda: FieldTerm(Field.ASSIGNEE, Operator.LT, (UserValue("bob"),)),
        lambda: FieldTerm(Field.ASSIGNEE, Operator.EQ, (IntValue(1),)),
        lambda: FieldTerm(Field.PRIORITY, Operator.NONE),
        lambda: FieldTerm(Field.ASSIGNEE, Operator.EQ),
        lambda: FieldTerm(Field.HOTLIST, Operator.EQ, (IntValue(1),), include_subtree=True),
        lambda: FieldTerm(Field.PRIORITY, Operator.LT, (IntValue(1), IntValue(2))),
        lambda: UserValue("none"),
        lambda: UserValue("a b"),
        lambda: IntValue(-1),
        lambda: DateValue(datetime(2026, 1, 1, tzinfo=UTC)),
        lambda: TimestampValue(datetime(2026, 1, 1)),
        lambda: Query(sort=(SortSpec(SortField.ID), SortSpec(SortField.ID, True))),
    ],
)
def test_trees_the_language_cannot_express_are_refused(build: Callable[[], object]) -> None:
    with pytest.raises((ValueError, TypeError)):
        build()


def test_explain_shows_structure_and_meaning() -> None:
    query = parse_query('is:open p<p2 -a:none "disk full" (c:123+ OR h:7) sort:-modified')
    assert explain(query) == "\n".join(
        [
            "all of:",
            "  is:open — the issue is open",
            "  priority<p2 — priority is P0 or P1",
            "  not:",
            "    assignee:none — assigned to no one",
            '  "disk full" — the title, description or a comment contains the phrase "disk full"',
            "  any of:",
            "    componentid:123+ — in component 123 or a component below it",
            "    hotlistid:7 — on hotlist 7",
            "sorted by modified (descending)",
        ]
    )


def test_explain_describes_users_and_dates() -> None:
    text = explain(parse_query("a:me,bob created>today-7 modified:2026-01-01"))
    assert "assigned to me (the signed-in user) or bob" in text
    assert "created after 7 days ago (UTC)" in text
    assert "modified on 2026-01-01" in text


@pytest.mark.parametrize(
    ("text", "meaning"),
    [
        # Levels by name: P0 is the highest, so "less than P2" read backwards.
        ("p<p2", "priority is P0 or P1"),
        ("p>=p1", "priority is P1, P2, P3 or P4"),
        ("s>s3", "severity is S4"),
        ("p<p0", "priority is less than P0: no level is, so nothing matches"),
        # A part of the name, as the Model matches it; not "the name is log".
        ("attachment:log", "an attachment's name contains log"),
        ("star:none", "no one starred it"),
        ("has:star", "someone starred it"),
        ("votecount>=2", "has at least 2 stars"),
        ("votecount:1", "has 1 star"),
        ("votecount<3", "has fewer than 3 stars"),
        # What the issue is or has, not a form's label ("a starrer is bob").
        ("star:bob", "starred by bob"),
        ("is:starred", "starred by me (the signed-in user)"),
        ("r:me", "reported by me (the signed-in user)"),
        ("cc:none", "no one in cc"),
        ("commenter:bob", "commented on by bob"),
        ("modifier:bob", "changed by bob"),
        ("lastmodifier:bob", "last changed by bob"),
        ("lastcommenter:bob", "last commented on by bob"),
        ("mention:bob", "mentions bob in the title, description or a comment"),
        ("cc:bob,carol", "cc includes bob or carol"),
        ("has:attachment", "has an attachment"),
        ("blockingid:4", "blocks issue 4"),
        ("blockedbyid>9", "blocked by an issue whose id is greater than 9"),
        ("parentid:6+", "below issue 6 (its child, or a child's child, and so on)"),
        ("canonicalid:none", "not a duplicate"),
        ("modified:today", "modified today (UTC)"),
        ("created:today-1", "created yesterday (UTC)"),
        ('externalid:"github:org/repo#5"', 'the external reference is "github:org/repo#5"'),
    ],
)
def test_explain_says_what_a_triager_means(text: str, meaning: str) -> None:
    assert explain(parse_query(text)).endswith(f" — {meaning}")


def test_explain_of_empty_query() -> None:
    assert explain(parse_query("")) == "matches every issue"


def test_query_to_json_is_serialisable_and_complete() -> None:
    query = parse_query(
        "a:me p:p1 is:open created>2026-01-01 modified<today-3 "
        "modified>2026-01-01T00:00:00Z -title:x sort:id"
    )
    data = query_to_json(query)
    assert json.loads(json.dumps(data)) == data
    assert data["query"] == format_query(query)
    assert data["sort"] == [{"field": "id", "descending": False}]
    assert data["filter"] == {
        "all_of": [
            {"term": {"field": "assignee", "op": "eq", "values": [{"user": "me"}],
                      "include_subtree": False}},
            {"term": {"field": "priority", "op": "eq", "values": [{"integer": 1}],
                      "include_subtree": False}},
            {"term": {"field": "status_class", "op": "eq", "values": [{"enum": "open"}],
                      "include_subtree": False}},
            {"term": {"field": "created", "op": "gt", "values": [{"date": "2026-01-01"}],
                      "include_subtree": False}},
            {"term": {"field": "modified", "op": "lt", "values": [{"days_ago": 3}],
                      "include_subtree": False}},
            {"term": {"field": "modified", "op": "gt",
                      "values": [{"time": "2026-01-01T00:00:00Z"}], "include_subtree": False}},
            {"negate": {"text": {"text": "x", "phrase": False, "field": "title"}}},
        ]
    }  # fmt: skip


def test_query_to_json_of_empty_query() -> None:
    assert query_to_json(Query()) == {"query": "", "filter": None, "sort": []}


def test_dates_print_as_iso() -> None:
    query = Query(FieldTerm(Field.CREATED, Operator.EQ, (DateValue(date(2026, 1, 2)),)))
    assert format_query(query) == "created:2026-01-02"
