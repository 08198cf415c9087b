"""Translations between database rows and bugless.v1 messages.

Kept apart from the SQL and from the transaction logic so that the one place
that knows how a column maps to a field is easy to audit. Principals are
stored as ``user:<id>`` / ``group:<name>`` strings; enums as their numeric
wire values; "none" as 0 or ``''``.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping
from json.encoder import encode_basestring_ascii as _quote
from typing import Any, TypeAlias, TypeVar

import asyncpg
import asyncpg.pool
import betterproto2

from bugless_core.issue_fields import ENUM_FIELDS
from bugless_model_postgres._visibility import component_visible
from bugless_proto import v1
from bugless_proto.wire import message_from_fields

#: A database row: an asyncpg record, or a plain mapping built from one (tests,
#: merged rows). asyncpg's Record is not a Mapping, so both are named.
Row: TypeAlias = Mapping[str, Any] | asyncpg.Record
#: A connection as the code receives it: straight from ``asyncpg.connect`` or
#: borrowed from the pool (a proxy with the same methods, not a subclass).
Conn: TypeAlias = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
#: The FieldChange of an imported entry's files the import did not copy
#: (``_imports``), whose added texts are searched (``_edits``).
NOT_IMPORTED_FIELD = "files_not_imported"


def one_row(row: asyncpg.Record | None) -> asyncpg.Record:
    """The row of a statement that always returns exactly one.

    ``INSERT ... RETURNING``, the read-back of an entry the same call just
    wrote, a checks query built to yield one row: for these, ``fetchrow``
    returning nothing means the SQL and the schema disagree. That is a bug,
    so it fails here by name rather than as a ``TypeError`` further on.

    Raises:
        RuntimeError: the statement returned no row.
    """
    if row is None:
        msg = "a statement that always returns one row returned none"
        raise RuntimeError(msg)
    return row


def principals_of(caller: v1.Caller) -> list[str]:
    """The caller's principals: ``user:<id>`` and ``group:<name>`` per group."""
    return [f"user:{caller.user_id}", *(f"group:{g}" for g in caller.groups)]


def principal_key(principal: v1.Principal | None) -> str:
    """A Principal message as its stored string."""
    if principal is None:
        return ""
    kind, value = betterproto2.which_one_of(principal, "kind")
    return f"{kind}:{value}"


def principal_message(key: str) -> v1.Principal:
    """A stored principal string as a Principal message."""
    kind, _, value = key.partition(":")
    return v1.Principal(group=value) if kind == "group" else v1.Principal(user=value)


def caller_role(caller: v1.Caller, effective_acl: Mapping[str, int] | str) -> v1.Role | None:
    """The caller's role from a component's effective ACL; None means no view.

    Whether they may view it is :func:`._visibility.component_visible`, the
    rule the statements use (the ACL's principals are the row's
    ``viewers``); then an admin is an admin, an open component (empty ACL)
    makes every caller an editor, else the highest role the ACL gives one
    of their principals.
    """
    acl: Mapping[str, int] = (
        json.loads(effective_acl) if isinstance(effective_acl, str) else effective_acl
    )
    principals = principals_of(caller)
    if not component_visible(caller.admin, acl.keys(), principals):
        return None
    if caller.admin:
        return v1.Role.ADMIN
    if not acl:
        return v1.Role.EDITOR
    return v1.Role(max(v1.Role.VIEWER, *(acl.get(p, 0) for p in principals)))


def acl_to_json(entries: Iterable[v1.AclEntry]) -> str:
    """Own ACL entries as the stored jsonb array (request order kept)."""
    return json.dumps([{"p": principal_key(e.principal), "r": int(e.role)} for e in entries])


def acl_from_json(raw: str | list[dict[str, Any]]) -> list[v1.AclEntry]:
    """The stored jsonb array as AclEntry messages."""
    items = json.loads(raw) if isinstance(raw, str) else raw
    return [v1.AclEntry(principal=principal_message(e["p"]), role=v1.Role(e["r"])) for e in items]


def template_to_json(template: v1.IssueTemplate | None) -> str:
    """An IssueTemplate as stored jsonb."""
    t = template or v1.IssueTemplate()
    return json.dumps(
        {
            "title": t.title,
            "description": t.description,
            "priority": int(t.priority),
            "severity": int(t.severity),
            "type": int(t.type),
            "assignee": t.assignee,
        }
    )


def template_from_json(raw: str | dict[str, Any]) -> v1.IssueTemplate:
    """Stored jsonb as an IssueTemplate."""
    d = json.loads(raw) if isinstance(raw, str) else raw
    return v1.IssueTemplate(
        title=d.get("title", ""),
        description=d.get("description", ""),
        priority=v1.Priority(d.get("priority", 0)),
        severity=v1.Severity(d.get("severity", 0)),
        type=v1.IssueType(d.get("type", 0)),
        assignee=d.get("assignee", ""),
    )


def component_from_row(row: Row, role: v1.Role) -> v1.Component:
    """A components row as the Component message seen with ``role``.

    ``row`` carries ``seen_path``, the path as the caller sees it
    (``_visibility.SEEN_PATH``; ``COMPONENT_SEEN_BY_ID`` and its siblings
    select it), never the whole ``path``, which may name components above
    that the caller may not view.
    """
    return v1.Component(
        id=row["id"],
        parent_id=row["parent_id"],
        name=row["name"],
        path=row["seen_path"],
        description=row["description"],
        archived=row["archived"],
        acl=acl_from_json(row["acl"]),
        template=template_from_json(row["template"]),
        created_at=row["created_at"],
        modified_at=row["modified_at"],
        version=row["version"],
        caller_role=role,
    )


_E = TypeVar("_E", bound=enum.Enum)


class _Members(dict[int, _E]):
    """Enum members by value; a value not among them goes to the enum's constructor."""

    def __init__(self, enum_type: type[_E]) -> None:
        super().__init__((member.value, member) for member in enum_type)
        self.enum_type = enum_type

    def __missing__(self, value: int) -> _E:
        return self.enum_type(value)


def _members(enum_type: type[_E]) -> _Members[_E]:
    return _Members(enum_type)


# Enum members by stored value: a dict look-up is a tenth of the cost of
# ``v1.Status(value)``, and every issue read converts four of them. Values
# not in the table (unknown ones, from a newer release) take the enum's own
# constructor. 0 (UNSPECIFIED) is in the table: a search's read mask reads
# the enums it leaves out as 0, on every row (``member or constructor``, as
# this was written before, called the constructor for the falsy member).
_STATUS, _PRIORITY = _members(v1.Status), _members(v1.Priority)
_SEVERITY, _TYPE = _members(v1.Severity), _members(v1.IssueType)


def issue_from_row(row: Row, hotlist_ids: Iterable[int]) -> v1.Issue:
    """An issues row (plus the hotlists the caller may see) as an Issue.

    The hot path of every read (a batch converts up to hundreds): kept to
    plain look-ups, and the message made without betterproto2's
    ``__init__`` (:func:`bugless_proto.wire.message_from_fields`), which
    checked 28 keywords against its sentinel for each issue. Custom field
    values are added by the caller (empty here).
    """
    return message_from_fields(
        v1.Issue,
        {
            "id": row["id"],
            "title": row["title"],
            "status": _STATUS[row["status"]],
            "priority": _PRIORITY[row["priority"]],
            "severity": _SEVERITY[row["severity"]],
            "type": _TYPE[row["type"]],
            "component_id": row["component_id"],
            "reporter": row["reporter"],
            "assignee": row["assignee"],
            "verifier": row["verifier"],
            "cc": sorted(row["cc"]),
            "hotlist_ids": sorted(hotlist_ids),
            "blocking_ids": sorted(row["blocking_ids"]),
            "blocked_by_ids": sorted(row["blocked_by_ids"]),
            "parent_id": row["parent_id"],
            "duplicate_of_id": row["duplicate_of_id"],
            "description": row["description"],
            "created_at": row["created_at"],
            "modified_at": row["modified_at"],
            "closed_at": row["closed_at"],
            "version": row["version"],
            "comment_count": row["comment_count"],
            "custom_fields": [],
            "external_id": row.get("external_id") or "",
            "star_count": row.get("star_count", 0),
            "starred": row.get("starred", False),
            "muted": row.get("muted", False),
            "has_children": row.get("has_children", False),
            "has_duplicates": row.get("has_duplicates", False),
        },
    )


def changes_to_json(changes: Iterable[v1.FieldChange]) -> str:
    """FieldChange messages as the stored jsonb array.

    The text ``json.dumps`` gives for the list of dicts ``{"field", "old",
    "new", "added", "removed"[, "name"][, "type"]}`` (``name`` and ``type``
    only when set: custom fields), written directly with json's own C string
    escaper and its default separators: every write stores one, and building
    the dicts for the encoder to walk cost about half of this function's time
    again (``test_convert`` compares both texts byte for byte). One f-string
    a change, and an empty list written as ``[]`` without a join: most
    changes are a scalar's, with neither list (8.1 -> 5.0 µs for the nine
    changes of a create with cc and a custom field).
    """
    parts = []
    for c in changes:
        added, removed = c.added, c.removed
        text = (
            f'{{"field": {_quote(c.field)}, "old": {_quote(c.old_value)}, '
            f'"new": {_quote(c.new_value)}, "added": '
            + (f"[{', '.join(map(_quote, added))}]" if added else "[]")
            + ', "removed": '
            + (f"[{', '.join(map(_quote, removed))}]" if removed else "[]")
        )
        if c.field_name:
            text += f', "name": {_quote(c.field_name)}'
        if c.field_type:
            text += f', "type": {int(c.field_type)}'
        parts.append(text + "}")
    return "[" + ", ".join(parts) + "]"


def entry_from_row(row: Row) -> v1.HistoryEntry:
    """An issue_history row as a HistoryEntry."""
    raw = row["changes"]
    items = json.loads(raw) if isinstance(raw, str) else raw
    return v1.HistoryEntry(
        issue_id=row["issue_id"],
        version=row["version"],
        author=row["author"],
        created_at=row["created_at"],
        comment=row["comment"],
        changes=[
            v1.FieldChange(
                field=c["field"],
                old_value=c["old"],
                new_value=c["new"],
                added=c["added"],
                removed=c["removed"],
                field_name=c.get("name", ""),
                field_type=v1.CustomFieldType(c.get("type", 0)),
            )
            for c in items
        ],
        caused_by_issue_id=row["caused_by_issue_id"],
        edits_version=row["edits_version"],
        redaction_target=v1.RedactionTarget(row["redaction_target"]),
        redacted_version=row["redacted_version"],
        redacted_attachment_id=row["redacted_attachment_id"],
        comment_redacted=row["comment_redacted"],
        imported_from=row.get("imported_from") or "",
        deleted_attachment_id=row.get("deleted_attachment_id") or 0,
    )


def hotlist_from_row(row: Row) -> v1.Hotlist:
    """A hotlists row (with its ``item_count``) as a Hotlist."""
    return v1.Hotlist(
        id=row["id"],
        name=row["name"],
        description=row["description"],
        owner=row["owner"],
        editors=list(row["editors"]),
        private=row["private"],
        created_at=row["created_at"],
        modified_at=row["modified_at"],
        version=row["version"],
        item_count=row["item_count"],
    )


def hotlist_item_from_row(row: Row) -> v1.HotlistItem:
    """A hotlist_items row as a HotlistItem."""
    return v1.HotlistItem(
        hotlist_id=row["hotlist_id"],
        issue_id=row["issue_id"],
        rank=row["rank"],
        note=row["note"],
        adder=row["adder"],
        added_at=row["added_at"],
    )


def saved_search_from_row(row: Row) -> v1.SavedSearch:
    """A saved_searches row as a SavedSearch."""
    return v1.SavedSearch(
        id=row["id"],
        owner=row["owner"],
        name=row["name"],
        query=row["query"],
        readers=[principal_message(p) for p in row["readers"]],
        created_at=row["created_at"],
        modified_at=row["modified_at"],
        version=row["version"],
        columns=list(row["columns"]),
    )


def scalar_text(name: str, value: Any) -> str:
    """How a scalar field's value is written in a FieldChange."""
    if name in ENUM_FIELDS:
        return "" if not value else str(ENUM_FIELDS[name](value).name)
    if name in {"component_id", "parent_id", "duplicate_of_id"}:
        return "" if not value else str(value)
    return str(value)
