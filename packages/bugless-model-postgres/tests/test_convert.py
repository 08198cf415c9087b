"""Rows to messages: an Issue built from a row is the one its constructor builds."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from bugless_model_postgres._convert import issue_from_row
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
        has_children=True,
    )
    assert built == expected
    assert bytes(built) == bytes(expected)
    # Every field is there (a field added to Issue but not here would fail
    # on first access, not at construction): the same attributes as built.
    assert vars(built).keys() == vars(expected).keys()
    assert {f.name for f in dataclasses.fields(v1.Issue)} <= vars(built).keys()


def test_columns_a_statement_does_not_read_take_the_defaults() -> None:
    """Write replies (RETURNING rows) have no star, relation flags or external id."""
    row = _row(status=0, priority=0, severity=0, type=0)
    for name in ("external_id", "star_count", "starred", "has_children", "has_duplicates"):
        del row[name]
    built = issue_from_row(row, [])
    assert built.status is v1.Status.UNSPECIFIED
    assert (built.external_id, built.star_count, built.starred) == ("", 0, False)
    assert (built.has_children, built.has_duplicates) == (False, False)
    assert built.custom_fields == []
    assert v1.Issue.parse(bytes(built)) == built
