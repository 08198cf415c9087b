"""How issue fields and values are named for people: one home for every surface.

The web timeline, the notification e-mails and chat messages all say
"Status: New → Fixed" and "Won't fix (obsolete)" the same way because they
read these tables; a label changed here changes everywhere.
"""

from __future__ import annotations

from bugless_proto import v1

STATUS_LABELS: dict[v1.Status, str] = {
    v1.Status.NEW: "New",
    v1.Status.ASSIGNED: "Assigned",
    v1.Status.ACCEPTED: "Accepted",
    v1.Status.FIXED: "Fixed",
    v1.Status.VERIFIED: "Verified",
    v1.Status.WONT_FIX_NOT_REPRODUCIBLE: "Won't fix (not reproducible)",
    v1.Status.WONT_FIX_INTENDED_BEHAVIOR: "Won't fix (intended behavior)",
    v1.Status.WONT_FIX_OBSOLETE: "Won't fix (obsolete)",
    v1.Status.WONT_FIX_INFEASIBLE: "Won't fix (infeasible)",
    v1.Status.DUPLICATE: "Duplicate",
}
TYPE_LABELS: dict[v1.IssueType, str] = {
    v1.IssueType.BUG: "Bug",
    v1.IssueType.FEATURE_REQUEST: "Feature request",
    v1.IssueType.CUSTOMER_ISSUE: "Customer issue",
    v1.IssueType.INTERNAL_CLEANUP: "Internal cleanup",
    v1.IssueType.PROCESS: "Process",
    v1.IssueType.VULNERABILITY: "Vulnerability",
    v1.IssueType.TASK: "Task",
}
#: What a ``FieldChange.field`` is called on a page or in a mail.
FIELD_LABELS = {
    "title": "Title",
    "status": "Status",
    "priority": "Priority",
    "severity": "Severity",
    "type": "Type",
    "component_id": "Component",
    "assignee": "Assignee",
    "verifier": "Verifier",
    "parent_id": "Parent",
    "duplicate_of_id": "Duplicate of",
    "cc": "CC",
    "hotlist_ids": "Hotlists",
    "blocking_ids": "Blocking",
    "blocked_by_ids": "Blocked by",
}
#: Fields whose FieldChange values are user references.
USER_FIELDS = frozenset({"assignee", "verifier", "cc", "reporter"})


#: ``CustomFieldType.USER`` as the int a upb message holds; betterproto2's
#: member compares equal to it.
_USER_TYPE = int(v1.CustomFieldType.USER)


def holds_people(change: v1.FieldChange) -> bool:
    """Whether a change's values are user ids: a people field or a USER custom field.

    A custom field's change says its type (``FieldChange.field_type``), so
    readers need no definition, which may be gone; entries written before the
    type was recorded carry none and read as plain values. ``change`` may be
    a betterproto2 message or a upb one (the API renames people in upb
    replies): its type is compared as an int, which both hold.
    """
    return change.field in USER_FIELDS or change.field_type == _USER_TYPE


#: Fields whose values are issue ids.
ISSUE_FIELDS = frozenset({"parent_id", "duplicate_of_id", "blocking_ids", "blocked_by_ids"})


def status_label(status: v1.Status) -> str:
    """``Won't fix (obsolete)`` for WONT_FIX_OBSOLETE."""
    return STATUS_LABELS.get(status, "—")


def short_status(name: str) -> str:
    """A status given by its short wire name (``FIXED``) as its label."""
    try:
        return STATUS_LABELS[v1.Status[name]]
    except KeyError:
        return name


def type_label(issue_type: v1.IssueType) -> str:
    """``Feature request`` for FEATURE_REQUEST."""
    return TYPE_LABELS.get(issue_type, "—")


def short_type(name: str) -> str:
    """A type given by its short wire name (``FEATURE_REQUEST``) as its label."""
    try:
        return TYPE_LABELS[v1.IssueType[name]]
    except KeyError:
        return name


def level_label(value: v1.Priority | v1.Severity) -> str:
    """``P1`` / ``S0``; a dash for UNSPECIFIED."""
    return value.name or "—" if value.value else "—"
