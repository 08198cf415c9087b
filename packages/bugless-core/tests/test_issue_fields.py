"""The one description of an issue's fields agrees with the proto and its users."""

from __future__ import annotations

from bugless_core.issue_fields import (
    CLOSED_STATUSES,
    ENUM_FIELDS,
    LIST_FIELDS,
    OPEN_STATUSES,
    SCALAR_FIELDS,
    is_open,
)
from bugless_core.issue_labels import FIELD_LABELS, holds_people
from bugless_core.model._validation import ISSUE_MASK_PATHS
from bugless_proto import DESCRIPTOR_POOL, v1, wire


def test_scalar_fields_are_the_issue_fields_message_in_proto_order() -> None:
    message = DESCRIPTOR_POOL.FindMessageTypeByName("bugless.v1.IssueFields")
    by_number = sorted(message.fields, key=lambda f: f.number)
    assert tuple(f.name for f in by_number) == SCALAR_FIELDS
    assert frozenset(SCALAR_FIELDS) == ISSUE_MASK_PATHS


def test_enum_fields_name_their_proto_enum() -> None:
    assert dict(ENUM_FIELDS) == {
        "status": v1.Status,
        "priority": v1.Priority,
        "severity": v1.Severity,
        "type": v1.IssueType,
    }


def test_list_fields_are_repeated_fields_of_an_issue() -> None:
    issue = v1.Issue()
    for name in LIST_FIELDS:
        assert getattr(issue, name) == [], name


def test_every_field_a_history_entry_names_has_a_label() -> None:
    assert set(FIELD_LABELS) == {*SCALAR_FIELDS, *LIST_FIELDS}


def test_people_changes_are_told_apart_in_betterproto2_and_upb_messages() -> None:
    # The API renames people in upb replies with the same rule the web and
    # the notifier apply to betterproto2 ones.
    upb_change = wire.upb_class(v1.FieldChange)
    changes = [
        v1.FieldChange(field="assignee"),
        v1.FieldChange(field="cc"),
        v1.FieldChange(field="customfield7", field_type=v1.CustomFieldType.USER),
        v1.FieldChange(field="customfield8", field_type=v1.CustomFieldType.TEXT),
        v1.FieldChange(field="customfield9"),  # written before the type was recorded
        v1.FieldChange(field="title"),
    ]
    expected = [True, True, True, False, False, False]
    assert [holds_people(c) for c in changes] == expected
    assert [holds_people(upb_change.FromString(wire.encode(c))) for c in changes] == expected


def test_every_status_is_open_or_closed_and_not_both() -> None:
    statuses = {s for s in v1.Status if s.value}
    assert statuses == OPEN_STATUSES | CLOSED_STATUSES
    assert not OPEN_STATUSES & CLOSED_STATUSES
    assert {s for s in statuses if is_open(s)} == {
        v1.Status.NEW,
        v1.Status.ASSIGNED,
        v1.Status.ACCEPTED,
    }
