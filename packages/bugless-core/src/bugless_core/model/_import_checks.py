"""Shape checks of ImportIssue (issue 21).

The import path writes what another tracker recorded: its people, its times,
its history. It is therefore gated twice, before any backend sees the call:
the caller must hold both the global ``admin`` and the ``import_issues``
permission (no component role stands in for either), and the request must be
a history that could have happened (times in order, deltas on fields an
entry may change), so a backend only has to apply it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime

from bugless_core import limits
from bugless_core.attachments import (
    MAX_ATTACHMENTS_PER_ISSUE,
    MAX_CONTENT_TYPE_LENGTH,
    MAX_RAW_NAME_CHARS,
)
from bugless_core.blobs import check_sha256
from bugless_core.errors import PermissionDenied
from bugless_core.model._validation import (
    _check_custom_values,
    _check_user_list,
    _fail,
    check_enum,
    check_ids,
    check_issue_fields,
    check_mask,
    check_text,
    check_user_ref,
    require_caller,
)
from bugless_proto import v1

#: ``<source>:<key>``: a lower-case source name, then anything without spaces.
EXTERNAL_ID = re.compile(r"^[a-z][a-z0-9_-]{0,31}:\S+$")
#: Scalar fields an imported entry may change, their values in ``fields``.
IMPORTED_SCALAR_PATHS = frozenset(
    {"title", "status", "priority", "severity", "type", "component_id", "assignee", "verifier"}
)
#: Relation fields an imported entry may set: the source names issues by its
#: own ids, so their values are references (``parent``, ``duplicate_of``),
#: which the Model resolves, not ``fields.parent_id``.
IMPORTED_RELATION_PATHS = frozenset({"parent_id", "duplicate_of_id"})
#: Every path an imported entry's update_mask may name.
IMPORTED_ENTRY_PATHS = IMPORTED_SCALAR_PATHS | IMPORTED_RELATION_PATHS
_CREATE_PATHS = IMPORTED_SCALAR_PATHS - {"status"}
#: A bugless issue id in decimal, as a relation reference may give one.
_ISSUE_ID = re.compile(r"^[1-9][0-9]{0,18}$")
#: The largest issue id (a signed 64-bit column): a larger number names no
#: issue, and the database could not even be asked about it.
_MAX_ISSUE_ID = 2**63 - 1


def check_import_permission(caller: v1.Caller | None) -> None:
    """Only an admin holding the ``import_issues`` permission may import."""
    require_caller(caller)
    if caller is None or not (caller.admin and caller.import_issues):
        raise PermissionDenied(
            "importing issues needs the global admin and import_issues permissions "
            "(an import identity); component roles do not grant it",
            metadata={"permission": "import_issues"},
        )


def check_external_id(value: str, path: str = "external_id") -> None:
    """``<source>:<key>``, bounded, without whitespace."""
    check_text(value, path, limits.MAX_EXTERNAL_ID_LENGTH, required=True)
    if not EXTERNAL_ID.match(value):
        raise _fail(
            path,
            f"{value!r} is not an external reference: write <source>:<key> with a lower-case "
            "source name and no spaces, e.g. trac:1234 or github:org/repo#56",
        )


def check_issue_reference(value: str, path: str) -> None:
    """A relation's other issue: an external id (``trac:12``) or a bugless id (``123``)."""
    check_text(value, path, limits.MAX_EXTERNAL_ID_LENGTH, required=True)
    if not (EXTERNAL_ID.match(value) or _ISSUE_ID.match(value)):
        raise _fail(
            path,
            f"{value!r} names no issue: give its external id (<source>:<key>, e.g. trac:12) "
            "or its bugless id in decimal (e.g. 123)",
        )
    if _ISSUE_ID.match(value) and int(value) > _MAX_ISSUE_ID:
        raise _fail(path, f"{value} names no issue: bugless ids are at most {_MAX_ISSUE_ID}")


def _check_relations(entry: v1.ImportedEntry, where: str, paths: Sequence[str]) -> bool:
    """An entry's relation changes: references well formed; returns whether it has any."""
    fields = entry.fields or v1.IssueFields()
    for name, value_field in (("parent_id", "parent"), ("duplicate_of_id", "duplicate_of")):
        if getattr(fields, name):
            raise _fail(
                f"{where}.fields.{name}",
                f"must be 0: name the issue by its reference in {where}.{value_field}",
            )
        value = getattr(entry, value_field)
        if name in paths:
            if value:
                check_issue_reference(value, f"{where}.{value_field}")
        elif value:
            raise _fail(
                f"{where}.{value_field}",
                f"is set but {where}.update_mask does not name {name}: add it to set the relation",
            )
    lists = ("blocking_add", "blocking_remove", "blocked_by_add", "blocked_by_remove")
    for list_name in lists:
        values: Sequence[str] = getattr(entry, list_name)
        if len(values) > limits.MAX_LIST_DELTA:
            raise _fail(
                f"{where}.{list_name}", f"has {len(values)} items; at most {limits.MAX_LIST_DELTA}"
            )
        for j, value in enumerate(values):
            check_issue_reference(value, f"{where}.{list_name}[{j}]")
    for add, remove in (lists[:2], lists[2:]):
        both = sorted(set(getattr(entry, add)) & set(getattr(entry, remove)))
        if both:
            raise _fail(f"{where}.{remove}", f"{both[0]!r} is also in {where}.{add}")
    return bool(
        IMPORTED_RELATION_PATHS.intersection(paths) or any(getattr(entry, n) for n in lists)
    )


def _time(value: datetime | None, path: str, *, required: bool) -> datetime | None:
    if value is None or value == datetime.fromtimestamp(0, UTC):
        if required:
            raise _fail(path, "required: the time the source recorded")
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def _check_files(files: Sequence[v1.ImportedAttachment], path: str) -> None:
    """Each file names stored content: a name, a SHA-256, a size; a description as a comment."""
    for i, file in enumerate(files):
        where = f"{path}[{i}]"
        check_text(file.name, f"{where}.name", MAX_RAW_NAME_CHARS, required=True)
        check_text(file.content_type, f"{where}.content_type", MAX_CONTENT_TYPE_LENGTH)
        check_text(file.description, f"{where}.description", limits.MAX_COMMENT_LENGTH)
        check_sha256(file.sha256, f"{where}.sha256")
        if file.size < 0:
            raise _fail(f"{where}.size", "must not be negative")


def _check_not_imported(files: Sequence[v1.NotImportedFile], path: str) -> None:
    """Each file left out names itself and why; a description as a comment."""
    if len(files) > limits.MAX_LIST_DELTA:
        raise _fail(path, f"has {len(files)} items; at most {limits.MAX_LIST_DELTA}")
    for i, file in enumerate(files):
        where = f"{path}[{i}]"
        check_text(file.name, f"{where}.name", MAX_RAW_NAME_CHARS, required=True)
        check_text(file.reason, f"{where}.reason", limits.MAX_IMPORT_REASON_LENGTH, required=True)
        check_text(file.description, f"{where}.description", limits.MAX_COMMENT_LENGTH)


def check_import_batch(request: v1.ImportIssuesRequest) -> None:
    """ImportIssues as a whole: permission, size, distinct external ids.

    Each item's own shape is checked on its own (a bad item is answered
    with its error, the others are written).
    """
    check_import_permission(request.caller)
    if len(request.issues) > limits.MAX_IMPORT_BATCH:
        raise _fail("issues", f"has {len(request.issues)} items; at most {limits.MAX_IMPORT_BATCH}")
    seen: set[str] = set()
    for i, item in enumerate(request.issues):
        if item.external_id in seen:
            raise _fail(f"issues[{i}].external_id", f"{item.external_id!r} is repeated")
        seen.add(item.external_id)


def check_import_issue(request: v1.ImportIssueRequest) -> None:
    """ImportIssue: permission, reference, initial state, and an ordered history."""
    check_import_permission(request.caller)
    check_external_id(request.external_id)
    fields = request.fields or v1.IssueFields()
    check_issue_fields(fields, "fields", _CREATE_PATHS)
    check_enum(fields.status, "fields.status")
    if fields.parent_id or fields.duplicate_of_id:
        raise _fail("fields.parent_id", "imported issues start without parent or duplicate")
    check_user_ref(request.reporter, "reporter", required=True)
    check_text(request.description, "description", limits.MAX_DESCRIPTION_LENGTH)
    _check_user_list(request.cc, "cc")
    check_ids(request.hotlist_ids, "hotlist_ids", limits.MAX_LIST_DELTA)
    check_ids(request.initial_hotlist_ids, "initial_hotlist_ids", limits.MAX_LIST_DELTA)
    if request.initial_hotlist_ids and not request.hotlists_replayed:
        raise _fail(
            "initial_hotlist_ids",
            "is read only with hotlists_replayed; without it the issue takes hotlist_ids",
        )
    _check_custom_values(request.custom_fields, "custom_fields")
    _check_custom_values(request.initial_custom_fields, "initial_custom_fields")
    if request.initial_custom_fields and not request.custom_fields_replayed:
        raise _fail(
            "initial_custom_fields",
            "is read only with custom_fields_replayed; without it the issue takes custom_fields",
        )
    created = _time(request.created_at, "created_at", required=True)
    if len(request.history) > limits.MAX_IMPORTED_ENTRIES:
        raise _fail(
            "history",
            f"has {len(request.history)} entries; at most {limits.MAX_IMPORTED_ENTRIES}",
        )
    previous = created
    files = 0
    for i, entry in enumerate(request.history):
        where = f"history[{i}]"
        check_user_ref(entry.author, f"{where}.author", required=True)
        at = _time(entry.created_at, f"{where}.created_at", required=True)
        if at is None or previous is None:
            continue  # unreachable: both are required above
        if at < previous:
            raise _fail(
                f"{where}.created_at",
                f"{at.isoformat()} is before the previous entry ({previous.isoformat()}): "
                "give the history oldest first",
            )
        previous = at
        check_text(entry.comment, f"{where}.comment", limits.MAX_COMMENT_LENGTH)
        paths = check_mask(
            entry.update_mask, f"{where}.update_mask", IMPORTED_ENTRY_PATHS, required=False
        )
        scalars = [p for p in paths if p in IMPORTED_SCALAR_PATHS]
        if scalars:
            check_issue_fields(entry.fields or v1.IssueFields(), f"{where}.fields", scalars)
        relations = _check_relations(entry, where, paths)
        _check_user_list(entry.cc_add, f"{where}.cc_add")
        _check_user_list(entry.cc_remove, f"{where}.cc_remove")
        check_ids(entry.hotlist_add, f"{where}.hotlist_add", limits.MAX_LIST_DELTA)
        check_ids(entry.hotlist_remove, f"{where}.hotlist_remove", limits.MAX_LIST_DELTA)
        _check_custom_values(entry.custom_fields, f"{where}.custom_fields")
        files += len(entry.attachments)
        _check_files(entry.attachments, f"{where}.attachments")
        _check_not_imported(entry.files_not_imported, f"{where}.files_not_imported")
        left_out = entry.relations_not_imported
        check_text(left_out, f"{where}.relations_not_imported", limits.MAX_IMPORT_REASON_LENGTH)
        if left_out and not left_out.strip():
            raise _fail(f"{where}.relations_not_imported", "is blank; give the reason or nothing")
        if entry.edits_description and entry.attachments:
            raise _fail(f"{where}.attachments", "a description edit attaches no files")
        changes = bool(
            paths
            or relations
            or entry.cc_add
            or entry.cc_remove
            or entry.hotlist_add
            or entry.hotlist_remove
            or entry.custom_fields
            or entry.files_not_imported
            or left_out
        )
        if entry.edits_description and changes:
            raise _fail(where, "a description edit changes no fields (give them their own entry)")
        if entry.edits_description and not entry.comment.strip():
            raise _fail(f"{where}.comment", "a description edit needs the new text")
        if not changes and not entry.comment.strip() and not entry.attachments:
            raise _fail(where, "an entry needs a comment, a field change or a file")
    if files > MAX_ATTACHMENTS_PER_ISSUE:
        raise _fail(
            "history", f"attaches {files} files; an issue has at most {MAX_ATTACHMENTS_PER_ISSUE}"
        )
    modified = _time(request.modified_at, "modified_at", required=False)
    if modified is not None and previous is not None and modified < previous:
        raise _fail("modified_at", "is before the last history entry")
    _time(request.closed_at, "closed_at", required=False)
