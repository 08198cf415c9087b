"""How wire values read on a page: enum labels, times, people, field names.

Kept in one module so every page says "Won't fix (obsolete)" and "P1" the same
way, and so the templates stay free of logic.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping

from markupsafe import Markup, escape

from bugless_proto import v1

OPEN_STATUSES = frozenset({v1.Status.NEW, v1.Status.ASSIGNED, v1.Status.ACCEPTED})

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
PRIORITIES = [p for p in v1.Priority if p.value]
SEVERITIES = [s for s in v1.Severity if s.value]
ROLE_LABELS = {
    v1.Role.VIEWER: "Viewer",
    v1.Role.EDITOR: "Editor",
    v1.Role.ADMIN: "Admin",
    v1.Role.UNSPECIFIED: "—",
}
#: Roles an ACL form offers, by the name the form submits, lowest first.
ACL_ROLES = {"viewer": v1.Role.VIEWER, "editor": v1.Role.EDITOR, "admin": v1.Role.ADMIN}
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
#: Labels of form fields (the issue's fields plus the form-only ones).
FORM_LABELS = {
    **FIELD_LABELS,
    "description": "Description",
    "comment": "Comment",
    "hotlist_add": "Add to hotlist",
    "name": "Name",
    "query": "Query",
    "share_with_groups": "Share with groups",
}
#: Fields whose FieldChange values are user references.
USER_FIELDS = frozenset({"assignee", "verifier", "cc", "reporter"})
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


def level_label(value: v1.Priority | v1.Severity) -> str:
    """``P1`` / ``S0``; a dash for UNSPECIFIED."""
    return value.name or "—" if value.value else "—"


def is_open(status: v1.Status) -> bool:
    """Whether the status is in the open class (NEW, ASSIGNED, ACCEPTED)."""
    return status in OPEN_STATUSES


def timestamp(value: datetime.datetime | None) -> Markup:
    """A ``<time>`` element in UTC, with the ISO form for machines and tooltips."""
    if value is None:
        return Markup("—")
    utc = value.astimezone(datetime.UTC)
    iso = utc.isoformat(timespec="seconds").replace("+00:00", "Z")
    shown = utc.strftime("%Y-%m-%d %H:%M UTC")
    return Markup('<time datetime="{0}" title="{0}">{1}</time>').format(iso, shown)


def user_chip(users: Mapping[str, v1.User], user_id: str) -> Markup:
    """A link to a person's page showing their display name; a dash for nobody.

    ``users`` is the batch the page fetched from the Authenticator for this
    render; an id missing from it (a deleted account) is shown as such rather
    than leaking the opaque id.
    """
    if not user_id:
        return Markup('<span class="muted">—</span>')
    user = users.get(user_id)
    if user is None:
        return Markup('<span class="chip chip-unknown" title="unknown user">unknown user</span>')
    name = user.display_name or user.username
    return Markup(
        '<a class="chip" href="/users/{0}" title="{0}{1}"><span class="avatar">{2}</span>{3}</a>'
    ).format(
        user.username,
        " (disabled)" if user.disabled else "",
        escape((name[:1] or "?").upper()),
        name,
    )


def username_of(users: Mapping[str, v1.User], user_id: str) -> str:
    """The username for an id (for pre-filling edit forms); empty for nobody."""
    user = users.get(user_id)
    return user.username if user is not None else ""
