"""The search fields added for Google Issue Tracker parity and custom fields (issue 18)."""

from __future__ import annotations

from datetime import date

import pytest

from bugless_core.search import (
    CustomFieldTerm,
    DateValue,
    Field,
    FieldTerm,
    IntValue,
    Not,
    Operator,
    Query,
    QuerySyntaxError,
    SortField,
    SortSpec,
    TextValue,
    UserValue,
    explain,
    format_query,
    parse_query,
    query_to_json,
    to_structured,
    user_terms,
)
from bugless_proto import v1


def only(text: str) -> object:
    return parse_query(text).filter


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("customfield12:4.2", CustomFieldTerm(Operator.EQ, ("4.2",), 12)),
        ("CustomField12:a,b", CustomFieldTerm(Operator.EQ, ("a", "b"), 12)),
        ('"Found In":4.2', CustomFieldTerm(Operator.EQ, ("4.2",), name="Found In")),
        ('"Found In">=4', CustomFieldTerm(Operator.GE, ("4",), name="Found In")),
        ("customfield7<2026-01-31", CustomFieldTerm(Operator.LT, ("2026-01-31",), 7)),
        ('customfield7:"two words"', CustomFieldTerm(Operator.EQ, ("two words",), 7)),
        ("foundin:4.2", CustomFieldTerm(Operator.EQ, ("4.2",), name="Found In")),
        ("inprod:yes", CustomFieldTerm(Operator.EQ, ("yes",), name="In Prod")),
        ("targetedto:5", CustomFieldTerm(Operator.EQ, ("5",), name="Targeted To")),
        ("verifiedin:5", CustomFieldTerm(Operator.EQ, ("5",), name="Verified In")),
        ("has:customfield3", CustomFieldTerm(Operator.ANY, field_id=3)),
        ('has:"Found In"', CustomFieldTerm(Operator.ANY, name="Found In")),
        ("-has:foundin", Not(CustomFieldTerm(Operator.ANY, name="Found In"))),
        ("customfield3:none", CustomFieldTerm(Operator.NONE, field_id=3)),
        ("customfield3:any", CustomFieldTerm(Operator.ANY, field_id=3)),
    ],
)
def test_custom_field_terms(text: str, expected: object) -> None:
    assert only(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("closed>2026-01-01", FieldTerm(Field.CLOSED, Operator.GT, (DateValue(date(2026, 1, 1)),))),
        ("resolved:none", FieldTerm(Field.CLOSED, Operator.NONE)),
        ("has:closed", FieldTerm(Field.CLOSED, Operator.ANY)),
        ("commenter:me", FieldTerm(Field.COMMENTER, Operator.EQ, (UserValue("me"),))),
        # A component by name or path, + for the components below (a quoted name too).
        ("component:Rocket", FieldTerm(Field.COMPONENT_NAME, Operator.EQ, (TextValue("Rocket"),))),
        (
            'component:"Web UI"+',
            FieldTerm(Field.COMPONENT_NAME, Operator.EQ, (TextValue("Web UI"),), True),
        ),
        (
            'component:"Rocket > Engine"',
            FieldTerm(Field.COMPONENT_NAME, Operator.EQ, (TextValue("Rocket>Engine"),)),
        ),
        ('component:"C++"', FieldTerm(Field.COMPONENT_NAME, Operator.EQ, (TextValue("C++"),))),
        # No description and no comment (the description is comment #1).
        ("commenter:none", FieldTerm(Field.COMMENTER, Operator.NONE)),
        ("-has:commenter", Not(FieldTerm(Field.COMMENTER, Operator.ANY))),
        ("modifier:ann", FieldTerm(Field.MODIFIER, Operator.EQ, (UserValue("ann"),))),
        ("lastmodifier:ann", FieldTerm(Field.LAST_MODIFIER, Operator.EQ, (UserValue("ann"),))),
        ("lastcommenter:bo", FieldTerm(Field.LAST_COMMENTER, Operator.EQ, (UserValue("bo"),))),
        ("parentid:12+", FieldTerm(Field.PARENT, Operator.EQ, (IntValue(12),), True)),
        ("attachment:crash", FieldTerm(Field.ATTACHMENT, Operator.EQ, (TextValue("crash"),))),
        ("has:attachment", FieldTerm(Field.ATTACHMENT, Operator.ANY)),
        ("-has:attachment", Not(FieldTerm(Field.ATTACHMENT, Operator.ANY))),
        ("is:starred", FieldTerm(Field.STARRED_BY, Operator.EQ, (UserValue("me"),))),
        ("votecount>3", FieldTerm(Field.STAR_COUNT, Operator.GT, (IntValue(3),))),
        ("votecount:0", FieldTerm(Field.STAR_COUNT, Operator.EQ, (IntValue(0),))),
        ("mention:me", FieldTerm(Field.MENTION, Operator.EQ, (UserValue("me"),))),
        (
            "-mention:ann,bo",
            Not(FieldTerm(Field.MENTION, Operator.EQ, (UserValue("ann"), UserValue("bo")))),
        ),
    ],
)
def test_parity_fields(text: str, expected: object) -> None:
    assert only(text) == expected


def test_sort_by_a_custom_field() -> None:
    assert parse_query("sort:-customfield9,priority").sort == (
        SortSpec(SortField.CUSTOM, True, 9),
        SortSpec(SortField.PRIORITY),
    )


@pytest.mark.parametrize(
    ("text", "mention"),
    [
        ("customfield0:x", "positive id"),
        ("customfieldx:x", "customfield<ID>"),
        ("customfield1:a,none", "stands alone"),
        ("customfield1<a,b", "one value"),
        ('"":x', "field name"),
        ("parentid>3+", "subtree"),
        ("sort:customfield0", "positive id"),
    ],
)
def test_bad_custom_terms_say_where(text: str, mention: str) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse_query(text)
    assert mention in info.value.problem


@pytest.mark.parametrize(
    "text",
    [
        'customfield12:4.2 "Found In">=4 -has:foundin sort:-customfield12',
        'customfield3:"a b" closed<today-3 parentid:5+ commenter:me',
        "customfield3:none lastmodifier:ann",
        "mention:me OR -mention:ann",
    ],
)
def test_custom_terms_print_back(text: str) -> None:
    query = parse_query(text)
    assert parse_query(format_query(query)) == query
    assert explain(query)
    assert query_to_json(query)["query"] == format_query(query)


def test_custom_terms_go_to_the_model_with_days_and_users_resolved() -> None:
    query = parse_query("customfield4:me,ann,4.2 customfield5>today-1")
    assert user_terms(query) == {"ann", "4.2"}
    structured = to_structured(query, me="u-me", users={"ann": "u-ann"}, today=date(2026, 3, 10))
    assert structured.filter is not None
    assert structured.filter.all_of is not None
    first, second = [n.term for n in structured.filter.all_of.nodes]
    assert first is not None
    assert second is not None
    assert first.field is v1.SearchField.CUSTOM
    assert first.custom_field_id == 4
    assert [v.text for v in first.values] == ["u-me", "ann", "4.2"]
    assert first.resolved_users == ["u-me", "u-ann", ""]
    assert second.op is v1.SearchOperator.GT
    assert [v.text for v in second.values] == ["2026-03-09"]


def test_me_in_a_custom_term_needs_a_signed_in_caller() -> None:
    with pytest.raises(QuerySyntaxError) as info:
        to_structured(parse_query('"Owner":me'), me=None, users={}, today=date(2026, 1, 1))
    assert info.value.query[info.value.position :].startswith("me")


def test_explain_names_custom_fields() -> None:
    text = explain(parse_query('"Found In":4.2 sort:customfield3'))
    assert 'every custom field named "Found In"' in text
    assert "customfield3 (ascending)" in text
    assert isinstance(Query(), Query)


def test_mention_terms_carry_lower_case_usernames() -> None:
    """Mentions are text (``@Ann``): the Model gets usernames, not user ids."""
    query = parse_query("mention:me,Ann")
    assert user_terms(query) == {"Ann"}
    structured = to_structured(
        query, me="u-me", me_name="Me", users={"Ann": "u-ann"}, today=date(2026, 3, 10)
    )
    assert structured.filter is not None
    mention = structured.filter.term
    assert mention is not None
    assert mention.field is v1.SearchField.MENTION
    assert [v.text for v in mention.values] == ["me", "ann"]
    with pytest.raises(QuerySyntaxError, match="no user named 'zed'"):
        to_structured(parse_query("mention:zed"), me=None, users={}, today=date(2026, 3, 10))
    with pytest.raises(QuerySyntaxError, match="sign in"):
        to_structured(parse_query("mention:me"), me=None, users={}, today=date(2026, 3, 10))
    with pytest.raises(QuerySyntaxError, match="username"):
        to_structured(parse_query("mention:me"), me="u-me", users={}, today=date(2026, 3, 10))
    assert "mention:me" in explain(query)
