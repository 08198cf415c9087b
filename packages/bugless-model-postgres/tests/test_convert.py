"""Rows to messages and back: an Issue built from a row is the one its constructor builds;
the stored texts of a write are the ones they were."""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Iterable, Mapping
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bugless_model_postgres._convert import changes_to_json, issue_from_row
from bugless_model_postgres._custom_values import dump_values
from bugless_model_postgres._issues import shares_a_transaction
from bugless_proto import v1

NOW = datetime.datetime(2026, 12, 3, 14, 30, tzinfo=datetime.UTC)


def _row(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": 7,
        "title": "A title",
        "status": int(v1.Status.ASSIGNED),
        "priority": int(v1.Priority.P1),
        "severity": int(v1.Severity.S3),
        "type": int(v1.IssueType.FEATURE_REQUEST),
        "component_id": 4,
        "reporter": "u1",
        "assignee": "u2",
        "verifier": "",
        "cc": ["zed", "amy"],
        "blocking_ids": [9, 3],
        "blocked_by_ids": [],
        "parent_id": 2,
        "duplicate_of_id": 0,
        "description": "words",
        "created_at": NOW,
        "modified_at": NOW,
        "closed_at": None,
        "version": 3,
        "comment_count": 1,
        "external_id": None,
        "star_count": 2,
        "starred": True,
        "muted": True,
        "has_children": True,
        "has_duplicates": False,
    }
    row.update(changes)
    return row


def test_an_issue_from_a_row_equals_the_constructed_one_field_by_field() -> None:
    built = issue_from_row(_row(), [5, 1])
    expected = v1.Issue(
        id=7,
        title="A title",
        status=v1.Status.ASSIGNED,
        priority=v1.Priority.P1,
        severity=v1.Severity.S3,
        type=v1.IssueType.FEATURE_REQUEST,
        component_id=4,
        reporter="u1",
        assignee="u2",
        cc=["amy", "zed"],
        hotlist_ids=[1, 5],
        blocking_ids=[3, 9],
        parent_id=2,
        description="words",
        created_at=NOW,
        modified_at=NOW,
        version=3,
        comment_count=1,
        star_count=2,
        starred=True,
        muted=True,
        has_children=True,
    )
    assert built == expected
    assert bytes(built) == bytes(expected)
    # Every field is there (a field added to Issue but not here would fail
    # on first access, not at construction): the same attributes as built.
    assert vars(built).keys() == vars(expected).keys()
    assert {f.name for f in dataclasses.fields(v1.Issue)} <= vars(built).keys()


def test_columns_a_statement_does_not_read_take_the_defaults() -> None:
    """Write replies (RETURNING rows) have no star, mute, relation flags or external id."""
    row = _row(status=0, priority=0, severity=0, type=0)
    for name in ("external_id", "star_count", "starred", "muted", "has_children", "has_duplicates"):
        del row[name]
    built = issue_from_row(row, [])
    assert built.status is v1.Status.UNSPECIFIED
    assert (built.external_id, built.star_count, built.starred, built.muted) == (
        "",
        0,
        False,
        False,
    )
    assert (built.has_children, built.has_duplicates) == (False, False)
    assert built.custom_fields == []
    assert v1.Issue.parse(bytes(built)) == built


# The write helpers below were rewritten for CPU per batch item (no ``**`` of
# one-key dicts, a constant for empty values, no ``Message.__bool__``); the
# previous bodies are kept verbatim as the reference they must equal.


def _old_changes_to_json(changes: Iterable[v1.FieldChange]) -> str:
    return json.dumps(
        [
            {
                "field": c.field,
                "old": c.old_value,
                "new": c.new_value,
                "added": list(c.added),
                "removed": list(c.removed),
                **({"name": c.field_name} if c.field_name else {}),
                **({"type": int(c.field_type)} if c.field_type else {}),
            }
            for c in changes
        ]
    )


def _old_dump_values(values: Mapping[str, Any]) -> str:
    return json.dumps(dict(values), sort_keys=True)


def _old_shares_a_transaction(request: v1.CreateIssueRequest) -> bool:
    fields = request.fields or v1.IssueFields()
    return not (
        request.hotlist_ids
        or request.blocking_ids
        or request.blocked_by_ids
        or fields.parent_id
        or fields.duplicate_of_id
    )


#: Any text, and what JSON escapes: quotes, backslash, controls, non-ASCII, a lone surrogate.
_texts = st.one_of(
    st.text(max_size=6),
    st.text(
        st.sampled_from(
            ['"', "\\", "\n", "\x00", "\x7f", "\u00e9", "\u2028", "\udc80", "\U0001f41b"]
        )
    ),
)
_changes = st.lists(
    st.builds(
        v1.FieldChange,
        field=_texts,
        old_value=_texts,
        new_value=_texts,
        added=st.lists(_texts, max_size=2),
        removed=st.lists(_texts, max_size=2),
        field_name=st.one_of(st.just(""), _texts),
        field_type=st.sampled_from(list(v1.CustomFieldType)),
    ),
    max_size=4,
)


@settings(max_examples=500)
@given(changes=_changes)
def test_changes_to_json_is_the_stored_text_it_was(changes: list[v1.FieldChange]) -> None:
    """Byte for byte the same jsonb text (key order included), custom fields or not."""
    assert changes_to_json(changes) == _old_changes_to_json(changes)


_stored = st.dictionaries(
    st.integers(1, 99).map(str),
    st.one_of(st.integers(), _texts, st.booleans(), st.lists(_texts, max_size=2)),
    max_size=3,
)


@settings(max_examples=300)
@given(values=_stored)
def test_dump_values_is_the_stored_text_it_was(values: dict[str, Any]) -> None:
    """Empty values included (the constant ``{}``)."""
    assert dump_values(values) == _old_dump_values(values)


_ids = st.lists(st.integers(1, 5), max_size=1)


@settings(max_examples=500)
@given(
    fields=st.one_of(
        st.none(),
        st.just(v1.IssueFields()),
        st.builds(
            v1.IssueFields,
            title=_texts,
            parent_id=st.sampled_from([0, 3]),
            duplicate_of_id=st.sampled_from([0, 4]),
            priority=st.sampled_from(list(v1.Priority)),
        ),
    ),
    hotlists=_ids,
    blocking=_ids,
    blocked_by=_ids,
)
def test_shares_a_transaction_is_the_answer_it_was(
    fields: v1.IssueFields | None, hotlists: list[int], blocking: list[int], blocked_by: list[int]
) -> None:
    request = v1.CreateIssueRequest(
        fields=fields, hotlist_ids=hotlists, blocking_ids=blocking, blocked_by_ids=blocked_by
    )
    assert shares_a_transaction(request) is _old_shares_a_transaction(request)
