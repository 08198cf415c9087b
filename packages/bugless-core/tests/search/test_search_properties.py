"""Rules that hold for all inputs: the parser never crashes, printing round-trips."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from bugless_core.search import (
    MAX_NESTING,
    And,
    CustomFieldTerm,
    DateValue,
    EnumValue,
    Field,
    FieldTerm,
    IntValue,
    Node,
    Not,
    Operator,
    Or,
    Query,
    QuerySyntaxError,
    RelativeDateValue,
    SortField,
    SortSpec,
    TextField,
    TextTerm,
    TextValue,
    TimestampValue,
    UserValue,
    Value,
    explain,
    format_query,
    parse_query,
    query_to_json,
    required_user_terms,
    to_structured,
    user_terms,
)
from bugless_core.search._ast import is_bare_value
from bugless_core.search._fields import FIELD_SPECS, SUBTREE_FIELDS
from bugless_proto import v1

T = TypeVar("T")
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- text -----------------------------------------------------------------------

FRAGMENTS = [
    "status:", "is:open", "is:closed", "is:fixed", "a:me", "assignee:bob", "r:none", "cc:any",
    "has:", "has:assignee", "p<p2", "p:p0,p1", "s>=s1", "t:bug", "c:123+", "h:7", "id>5",
    "created>2026-01-01", "modified<today-7", "created>=2026-01-01T10:00:00Z", "today",
    "title:", 'comment:"x y"', "sort:", "sort:priority,-modified", "sort:id", "-", "(", ")",
    "OR", "or", "AND", "NOT", "and", '"', '"disk full"', "\\", ",", ":", "<", "<=", ">", ">=",
    "=", "+", "none", "any", "me", "p9", "asignee:x", "x", "日本", "\t", "\n", "  ",
]  # fmt: skip

token_soup = st.lists(
    st.tuples(st.sampled_from(FRAGMENTS), st.sampled_from(["", " ", " ", "  "])), max_size=14
).map(lambda parts: "".join(f + sep for f, sep in parts))


def outcome(call: Callable[[], T]) -> T | QuerySyntaxError:
    """The result of ``call``, or the QuerySyntaxError it raised (anything else propagates)."""
    try:
        return call()
    except QuerySyntaxError as error:
        return error


def check_parse_outcome(text: str) -> None:
    """parse_query returns a Query or raises QuerySyntaxError; both are well-formed."""
    result = outcome(lambda: parse_query(text))
    if isinstance(result, QuerySyntaxError):
        assert 0 <= result.position <= len(text)
        assert result.length >= 1
        assert result.query == text
        assert result.message.startswith(f"at column {result.position + 1}: ")
        assert "^" in result.render_caret()
        return
    assert isinstance(result, Query)
    assert parse_query(format_query(result)) == result
    explain(result)
    json.dumps(query_to_json(result))


@FAST
@given(st.text())
def test_arbitrary_text_parses_or_raises_a_syntax_error(text: str) -> None:
    check_parse_outcome(text)


@FAST
@given(token_soup)
def test_token_soup_parses_or_raises_a_syntax_error(text: str) -> None:
    check_parse_outcome(text)


# --- trees ----------------------------------------------------------------------


def accepted(build: Callable[..., T], *args: st.SearchStrategy[Any]) -> st.SearchStrategy[T]:
    """What ``build`` returns for the drawn arguments, skipping those it refuses.

    The tree's constructors refuse what the language cannot express, so this
    yields exactly the trees the round-trip promise covers.
    """

    def attempt(drawn: tuple[Any, ...]) -> T | None:
        try:
            return build(*drawn)
        except (ValueError, TypeError):
            return None

    # filter() does not narrow the strategy's type from T | None to T.
    return st.tuples(*args).map(attempt).filter(lambda v: v is not None)  # type: ignore[return-value]


ascii_names = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9._@+-]{0,10}", fullmatch=True)
unicode_names = st.text(st.characters(categories=["L", "Nd"]), min_size=1, max_size=6)
usernames = (ascii_names | unicode_names).filter(lambda n: n.lower() not in {"me", "none", "any"})
user_values = st.just(UserValue("me")) | usernames.map(UserValue)

some_text = st.text(min_size=1, max_size=10)
words = accepted(TextTerm, some_text)
phrases = accepted(lambda t: TextTerm(t, phrase=True), some_text)
field_texts = accepted(
    TextTerm, some_text, st.booleans(), st.sampled_from([TextField.TITLE, TextField.COMMENT])
)

offsets = st.integers(min_value=-23 * 60, max_value=23 * 60).map(
    lambda m: timezone(timedelta(minutes=m))
)
date_values: st.SearchStrategy[Value] = st.one_of(
    st.dates().map(DateValue),
    st.integers(0, 1_000_000).map(RelativeDateValue),
    st.datetimes(
        min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=offsets
    ).map(TimestampValue),
)


#: Parts of attachment names, bare (a list of them prints as a comma list).
name_parts = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,8}", fullmatch=True).filter(
    lambda v: v.lower() not in {"none", "any", "me"}
)


#: Component names and paths as the parser keeps them (bare: no '+' at the end,
#: which marks a subtree; no spaces around '>', which it drops).
component_names = (
    st.lists(
        st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,6}[A-Za-z0-9_.-]", fullmatch=True),
        min_size=1,
        max_size=3,
    )
    .map(">".join)
    .filter(lambda v: v.lower() not in {"none", "any", "me"})
)


def values_for(field: Field) -> st.SearchStrategy[Value]:
    match field:
        case (
            Field.ASSIGNEE
            | Field.REPORTER
            | Field.CC
            | Field.VERIFIER
            | Field.COMMENTER
            | Field.MODIFIER
            | Field.LAST_MODIFIER
            | Field.LAST_COMMENTER
            | Field.STARRED_BY
            | Field.MENTION
        ):
            return user_values
        case Field.PRIORITY | Field.SEVERITY:
            return st.integers(0, 4).map(IntValue)
        case Field.STATUS:
            return st.sampled_from([s.name.lower() for s in v1.Status if s.value]).map(EnumValue)
        case Field.TYPE:
            return st.sampled_from([t.name.lower() for t in v1.IssueType if t.value]).map(EnumValue)
        case Field.STATUS_CLASS:
            return st.sampled_from(["open", "closed"]).map(EnumValue)
        case Field.CREATED | Field.MODIFIED | Field.CLOSED:
            return date_values
        case Field.ATTACHMENT:
            return name_parts.map(TextValue)
        case Field.COMPONENT_NAME:
            return component_names.map(TextValue)
        case _:
            return st.integers(0, 2**63 - 1).map(IntValue)


#: The fields the language compares by order, and those an issue may lack (``none``,
#: ``any``): the parser's own table, so a field made nullable is drawn with them.
ORDERED = {field for field, spec in FIELD_SPECS.items() if spec.ordered}
NULLABLE = {field for field, spec in FIELD_SPECS.items() if spec.nullable}


@st.composite
def field_terms(draw: st.DrawFn) -> FieldTerm:
    field = draw(st.sampled_from(list(Field)))
    ops = [Operator.EQ]
    if field in ORDERED:
        ops += [Operator.LT, Operator.LE, Operator.GT, Operator.GE]
    if field in NULLABLE:
        ops += [Operator.ANY, Operator.NONE]
    op = draw(st.sampled_from(ops))
    values = values_for(field)
    if op in (Operator.ANY, Operator.NONE):
        chosen: tuple[Value, ...] = ()
    elif op is Operator.EQ:
        chosen = tuple(draw(st.lists(values, min_size=1, max_size=3)))
    else:
        chosen = (draw(values),)
    subtree = field in SUBTREE_FIELDS and op is Operator.EQ and draw(st.booleans())
    return FieldTerm(field, op, chosen, subtree)


@pytest.mark.parametrize(
    ("field", "op"),
    [
        (Field.COMMENTER, Operator.NONE),
        (Field.COMMENTER, Operator.ANY),
        (Field.STARRED_BY, Operator.NONE),
        (Field.STAR_COUNT, Operator.GT),
    ],
)
def test_the_round_trip_draws_each_null_and_ordered_form(field: Field, op: Operator) -> None:
    """``commenter:none`` and the like are drawn, not only covered by the parity cases."""
    drawn = find(field_terms(), lambda t: t.field is field and t.op is op)
    assert (drawn.field, drawn.op) == (field, op)


#: Custom field values: anything a person might type, bare or (alone) quoted.
custom_values = st.text(
    st.characters(exclude_characters='"\\,', exclude_categories=("Cs", "Cc")),
    min_size=1,
    max_size=8,
).filter(lambda v: v.strip() == v and v.lower() not in ("none", "any") and bool(v))
custom_names = st.text(
    st.characters(exclude_characters='"\\', exclude_categories=("Cs", "Cc")),
    min_size=1,
    max_size=10,
).filter(lambda v: v.strip() == v and bool(v))


@st.composite
def custom_terms(draw: st.DrawFn) -> CustomFieldTerm:
    field_id = draw(st.integers(0, 10**6))
    name = "" if field_id else draw(custom_names)
    op = draw(st.sampled_from(list(Operator)))
    if op in (Operator.ANY, Operator.NONE):
        values: tuple[str, ...] = ()
    elif op is Operator.EQ:
        values = tuple(draw(st.lists(custom_values, min_size=1, max_size=3)))
        if len(values) > 1:
            values = tuple(v for v in values if is_bare_value(v)) or ("x",)
    else:
        values = (draw(custom_values),)
    return CustomFieldTerm(op, values, field_id, name)


leaves: st.SearchStrategy[Node] = st.one_of(
    words, phrases, field_texts, field_terms(), custom_terms()
)


def _compound(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    lists = st.lists(children, min_size=2, max_size=4).map(tuple)
    return st.one_of(children.map(Not), lists.map(And), lists.map(Or))


def depth(node: Node) -> int:
    match node:
        case Not(child=child):
            return 1 + depth(child)
        case And(children=children) | Or(children=children):
            return 1 + max(depth(c) for c in children)
        case _:
            return 0


nodes = st.recursive(leaves, _compound, max_leaves=12).filter(lambda n: depth(n) < MAX_NESTING)
sorts = st.lists(
    st.one_of(
        st.builds(
            SortSpec,
            st.sampled_from([f for f in SortField if f is not SortField.CUSTOM]),
            st.booleans(),
        ),
        st.builds(SortSpec, st.just(SortField.CUSTOM), st.booleans(), st.integers(1, 10**6)),
    ),
    max_size=3,
    unique_by=lambda s: (s.field, s.custom_field_id),
).map(tuple)
queries = st.builds(Query, st.none() | nodes | nodes | nodes, sorts)


@FAST
@given(queries)
def test_format_then_parse_gives_the_same_tree(query: Query) -> None:
    text = format_query(query)
    reparsed = parse_query(text)
    assert reparsed == query, text
    assert format_query(reparsed) == text


@FAST
@given(queries)
def test_explain_and_json_never_crash(query: Query) -> None:
    assert explain(query)
    data = query_to_json(query)
    assert json.loads(json.dumps(data)) == data


@FAST
@given(queries, st.dates(min_value=date(1000, 1, 1)), st.booleans())
def test_to_structured_never_crashes_when_users_resolve(
    query: Query, today: date, reparse: bool
) -> None:
    if reparse:
        query = parse_query(format_query(query))
    users = {name: f"id-{name}" for name in user_terms(query)}
    result = outcome(
        lambda: to_structured(query, me="id-me", me_name="me", users=users, today=today)
    )
    if isinstance(result, QuerySyntaxError):
        # Only a relative date reaching back before the year 1 may fail.
        assert "before the year 1" in result.problem
        fault = result.query[result.position : result.position + result.length]
        assert fault.startswith("today-")
        return
    assert v1.StructuredQuery.parse(bytes(result)) == result
    assert (result.filter is None) == (query.filter is None)


@FAST
@given(queries)
def test_unresolved_users_are_reported_inside_the_query(query: Query) -> None:
    names = required_user_terms(query)
    result = outcome(lambda: to_structured(query, me=None, users={}, today=date(2026, 3, 10)))
    if not isinstance(result, QuerySyntaxError):
        assert not names
        return
    source = query.source if query.source is not None else format_query(query)
    assert result.query == source
    fault = source[result.position : result.position + result.length]
    if result.problem.startswith("no user named"):
        assert result.problem == f"no user named '{fault}'"
        assert fault in names
    elif result.problem.startswith("sign in"):
        assert fault == "me"
    else:
        assert fault.startswith("today-")
