"""ImportIssue: an issue from another tracker, with its people, times and history.

An import is replayed in Python, not through :mod:`._issues`: the state
after each source entry is computed from the one before with the same rules
a native change follows (defaults, ``closed_at`` on a move into the closed
class, FieldChanges rendered by :func:`._convert.scalar_text`), so replaying
the stored history still gives the issue. What is written is then a handful
of statements per issue whatever its history: the issue row in its final
state, every entry in one ``INSERT ... SELECT FROM unnest``, their
notifications in one more. That is what lets a 10k-issue tracker import in
under a minute (bench/import).

Idempotency lives in the row: ``external_id`` is unique and
``import_position`` counts the source items consumed, so importing again
appends only the items beyond it, and a source item that changes nothing
here (a field set to the value it has) still advances the position without
writing an entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bugless_core.attachments import AttachmentSettings
from bugless_core.blobs import BlobStore
from bugless_core.errors import FailedPrecondition, NotFound, Unavailable
from bugless_core.issue_fields import ENUM_FIELDS, is_open
from bugless_model_postgres import _custom_fields, _custom_values, _import_files, _mentions
from bugless_model_postgres import _import_queries as iq
from bugless_model_postgres._components import seen_path
from bugless_model_postgres._context import WriteContext
from bugless_model_postgres._convert import NOT_IMPORTED_FIELD, changes_to_json, scalar_text
from bugless_model_postgres._import_labels import LabelReplay, hotlists_of
from bugless_model_postgres._import_relations import (
    RelationReplay,
    changes_relations,
    initial_relations,
    lock_touched_in_id_order,
    resolve,
    write_relations,
)
from bugless_model_postgres._issues import append_to_hotlist
from bugless_proto import v1

#: The FieldChange of an entry whose relation changes the import left out,
#: and why (``ImportedEntry.relations_not_imported``): not a comment.
RELATIONS_NOT_IMPORTED_FIELD = "relations_not_imported"
#: Scalar fields an import sets, in the order FieldChanges list them.
_SCALARS = (
    "title",
    "status",
    "priority",
    "severity",
    "type",
    "component_id",
    "assignee",
    "verifier",
)
_DEFAULTS: dict[str, int] = {
    "priority": int(v1.Priority.P2),
    "severity": int(v1.Severity.S2),
    "type": int(v1.IssueType.BUG),
}
_EPOCH = datetime.fromtimestamp(0, UTC)


def _when(value: datetime | None) -> datetime | None:
    """A request timestamp, or None when it was left empty."""
    if value is None or value == _EPOCH:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@dataclass
class _Entry:
    """One history entry about to be written."""

    author: str
    created_at: datetime
    comment: str
    changes: list[v1.FieldChange]
    #: 1 for an edit of the description (entry 1), as EditComment marks one.
    edits_version: int = 0
    #: The files the entry attaches (:mod:`._import_files`).
    files: Sequence[v1.ImportedAttachment] = ()


@dataclass
class _Replay:
    """The issue's state while its source history is applied, and the entries."""

    state: dict[str, Any]
    closed_at: datetime | None
    entries: list[_Entry] = field(default_factory=list)
    components: set[int] = field(default_factory=set)
    #: The description's latest text when the history edits it.
    description: str | None = None
    #: The relations, when the history changes any (:mod:`._import_relations`).
    relations: RelationReplay | None = None

    def apply(
        self, index: int, item: v1.ImportedEntry, extra: Sequence[v1.FieldChange] = ()
    ) -> None:
        """Apply source item ``index``; an item that changes nothing writes nothing.

        ``extra`` are the item's hotlist and custom field changes, which
        :func:`_extend` works out (they need the database).
        """
        at = _when(item.created_at) or _EPOCH
        if item.edits_description:
            self.description = item.comment
            self.entries.append(_Entry(item.author, at, item.comment, [], edits_version=1))
            return
        fields = item.fields or v1.IssueFields()
        paths = set(item.update_mask.paths) if item.update_mask else set()
        changes: list[v1.FieldChange] = []
        for name in _SCALARS:
            if name not in paths:
                continue
            value: Any = getattr(fields, name)
            if name in ENUM_FIELDS:
                value = int(value) or _DEFAULTS.get(name, 0)
                if not value:  # status UNSPECIFIED: nothing to set
                    continue
            changes.extend(self._set(name, value, at))
        if self.relations is not None:
            changes.extend(self.relations.apply(index, item, at))
        changes.extend(self._cc(item.cc_add, item.cc_remove))
        changes.extend(extra)
        changes.extend(_not_imported(item.files_not_imported))
        if item.relations_not_imported:
            changes.append(
                v1.FieldChange(
                    field=RELATIONS_NOT_IMPORTED_FIELD,
                    field_name="Source relation changes not imported",
                    added=[item.relations_not_imported],
                )
            )
        if changes or item.comment.strip() or item.attachments:
            self.entries.append(
                _Entry(item.author, at, item.comment, changes, files=item.attachments)
            )

    def _set(self, name: str, value: Any, at: datetime) -> list[v1.FieldChange]:
        old = self.state[name]
        if value == old:
            return []
        if name == "component_id":
            self.components.add(int(value))
        if name == "status":
            if is_open(v1.Status(old)) and not is_open(v1.Status(value)):
                self.closed_at = at
            elif is_open(v1.Status(value)):
                self.closed_at = None
        self.state[name] = value
        return [
            v1.FieldChange(
                field=name, old_value=scalar_text(name, old), new_value=scalar_text(name, value)
            )
        ]

    def _cc(self, add: Sequence[str], remove: Sequence[str]) -> list[v1.FieldChange]:
        cc = set(self.state["cc"])
        added = sorted(set(add) - cc)
        removed = sorted(set(remove) & cc)
        if not added and not removed:
            return []
        self.state["cc"] = sorted((cc | set(added)) - set(removed))
        return [v1.FieldChange(field="cc", added=added, removed=removed)]


def _not_imported(files: Sequence[v1.NotImportedFile]) -> list[v1.FieldChange]:
    """The entry's files the import did not copy, as one change: not a comment of its author.

    Named (``field_name``) as a custom field's change is, so that every
    reader shows it by that name without knowing the field.
    """
    if not files:
        return []
    shown = [
        f"{f.name} ({f.reason})" + (f": {f.description}" if f.description else "") for f in files
    ]
    return [
        v1.FieldChange(
            field=NOT_IMPORTED_FIELD, field_name="Source files not imported", added=shown
        )
    ]


def _initial_state(request: v1.ImportIssueRequest) -> dict[str, Any]:
    fields = request.fields or v1.IssueFields()
    status = int(fields.status) or int(v1.Status.ASSIGNED if fields.assignee else v1.Status.NEW)
    return {
        "title": fields.title,
        "status": status,
        "priority": int(fields.priority) or _DEFAULTS["priority"],
        "severity": int(fields.severity) or _DEFAULTS["severity"],
        "type": int(fields.type) or _DEFAULTS["type"],
        "component_id": fields.component_id,
        "assignee": fields.assignee,
        "verifier": fields.verifier,
        "cc": sorted(set(request.cc)),
    }


def _creation_changes(state: dict[str, Any]) -> list[v1.FieldChange]:
    """Entry 1's changes: every field set at creation, as a native create records."""
    empty: dict[str, Any] = {name: 0 if name in ENUM_FIELDS else "" for name in _SCALARS}
    empty["component_id"] = 0
    changes = [
        v1.FieldChange(
            field=name,
            old_value=scalar_text(name, empty[name]),
            new_value=scalar_text(name, state[name]),
        )
        for name in _SCALARS
        if state[name] != empty[name]
    ]
    if state["cc"]:
        changes.append(v1.FieldChange(field="cc", added=list(state["cc"])))
    return changes


def _component_after(item: v1.ImportedEntry, current: int) -> int:
    """The issue's component once ``item`` is applied (its move, if it makes one)."""
    paths = item.update_mask.paths if item.update_mask else []
    moved_to = item.fields.component_id if item.fields and "component_id" in paths else 0
    return moved_to or current


async def _check_components(ctx: WriteContext, ids: set[int], external_id: str) -> None:
    """Every component the history puts the issue in exists and is not archived.

    An archived one is named by its path as the caller sees it
    (:func:`._components.seen_path`), as every refusal names a component.
    Importers are global admins (``check_import_permission``), who see every
    path whole, so today this reads nothing more; it keeps the one rule
    should the import permission ever be granted without admin.
    """
    rows = {r["id"]: r for r in await ctx.conn.fetch(iq.IMPORT_COMPONENTS, sorted(ids))}
    for component_id in sorted(ids):
        row = rows.get(component_id)
        if row is None:
            raise NotFound(
                f"component {component_id} (named by the import of {external_id}) does not exist",
                metadata={"component_id": str(component_id)},
            )
        if row["archived"]:
            raise FailedPrecondition(
                f"component {await seen_path(ctx.conn, ctx.caller, row)} is archived and "
                "accepts no imported issues",
                metadata={"component_id": str(component_id)},
            )


@dataclass(frozen=True)
class Files:
    """Where imported files' content is and the limits they meet (:mod:`._import_files`)."""

    store: BlobStore
    settings: AttachmentSettings


async def _write_entries(
    ctx: WriteContext,
    issue_id: int,
    first_version: int,
    entries: list[_Entry],
    *,
    external_id: str,
    files: Files,
) -> None:
    if not entries:
        return
    versions = list(range(first_version, first_version + len(entries)))
    placed = [(v, e.author, e.created_at, e.files) for v, e in zip(versions, entries, strict=True)]
    # Before the entries' notifications: a file that cannot be attached
    # (content gone, limits) rolls the whole issue back.
    await _import_files.attach(
        ctx, issue_id, store=files.store, settings=files.settings, placed=placed,
        external_id=external_id,
    )  # fmt: skip
    await ctx.conn.execute(
        iq.INSERT_IMPORTED_ENTRIES,
        issue_id,
        versions,
        [e.author for e in entries],
        [e.created_at for e in entries],
        [e.comment for e in entries],
        [changes_to_json(e.changes) for e in entries],
        external_id,
        [e.edits_version for e in entries],
    )
    if ctx.dialect.notify is not None:
        await ctx.conn.execute(iq.NOTIFY_ENTRIES, ctx.channel, issue_id, versions)
    ctx.written.extend((issue_id, v) for v in versions)


def _description(original: str, replay: _Replay) -> str:
    """The description now: the last imported edit's text, else the original."""
    return original if replay.description is None else replay.description


def _all_text(entries: Sequence[_Entry]) -> str:
    """The comments as one document for the full-text columns.

    Each entry's comment, then the descriptions of the files it attaches,
    then its files not imported (name, why, description: what the comment
    saying so held before they were a change): a description is searched as
    the comment beside it is (``_edits`` rebuilds the vectors in this order
    after an edit or a redaction).
    """
    texts = (t for e in entries for t in (e.comment, *_described(e)))
    return "\n".join(t for t in texts if t)


def _described(entry: _Entry) -> list[str]:
    """The texts of ``entry``'s files: those it attaches, then those not imported."""
    left_out = (t for c in entry.changes if c.field == NOT_IMPORTED_FIELD for t in c.added)
    return [*(f.description for f in entry.files), *left_out]


async def import_issue(
    ctx: WriteContext, request: v1.ImportIssueRequest, files: Files
) -> tuple[int, bool, int]:
    """Create or extend the issue of ``request.external_id``; ``files`` for its entries' files.

    Returns:
        The issue id, whether this call created it, and how many entries it
        wrote.
    """
    await lock_touched_in_id_order(ctx, request)
    existing = await ctx.conn.fetchrow(iq.IMPORTED_ISSUE, request.external_id)
    if existing is not None:
        return await _extend(ctx, request, existing, files)
    return await _create(ctx, request, files)


async def _create(
    ctx: WriteContext, request: v1.ImportIssueRequest, files: Files
) -> tuple[int, bool, int]:
    created_at = _when(request.created_at) or ctx.now
    state = _initial_state(request)
    initially_closed = not is_open(v1.Status(state["status"]))
    replay = _Replay(dict(state), created_at if initially_closed else None)
    replay.components.add(state["component_id"])
    first = _Entry(request.reporter, created_at, request.description, _creation_changes(state))
    items = list(enumerate(request.history))
    resolved = await resolve(ctx, request.external_id, 0, items)
    if changes_relations(items):
        replay.relations = RelationReplay(initial_relations(), resolved)
    # Every component the history names exists, before a custom field is
    # looked up on one (a missing one is NOT_FOUND, not a field's refusal).
    named = {state["component_id"], *(_component_after(item, 0) for _, item in items)}
    await _check_components(ctx, named - {0}, request.external_id)
    replayed = request.custom_fields_replayed
    given = request.initial_custom_fields if replayed else request.custom_fields
    custom: dict[str, Any] = {}
    if given or replayed:
        path = "initial_custom_fields" if replayed else "custom_fields"
        # The initial values of a replayed history are its first state,
        # checked for required fields where the issue ends (check_final);
        # planned without values too, so its fields take their defaults as
        # a native create's do (check_final refuses a required one without).
        custom, custom_changes, _ = await _custom_fields.plan_values(
            ctx, component_id=state["component_id"], current={}, given=given,
            creating=True, moved=False, path=path, check_required=not replayed,
        )  # fmt: skip
        first.changes.extend(custom_changes)
    on_hotlists = request.hotlists_replayed
    initial = request.initial_hotlist_ids if on_hotlists else request.hotlist_ids
    # A creation replaying custom fields ends in a state it made: checked
    # (check_final) however it got there, as a native create in a component
    # with fields is, so one created where a field is required needs it as
    # one moved there does.
    labels = LabelReplay(
        custom, set(initial), hotlists_replayed=on_hotlists, custom_replayed=replayed,
        planned=replayed,
    )  # fmt: skip
    for index, item in items:
        extra: list[v1.FieldChange] = []
        after = _component_after(item, replay.state["component_id"])
        moved = after != replay.state["component_id"]
        if (replayed and (item.custom_fields or moved)) or (
            on_hotlists and (item.hotlist_add or item.hotlist_remove)
        ):
            extra = await labels.apply(ctx, item, after, index, moved=moved)
        replay.apply(index, item, extra)
    final_path = "history" if items else "initial_custom_fields"
    await labels.check_final(ctx, replay.state["component_id"], final_path)
    custom = labels.custom
    if initial:
        first.changes.append(
            v1.FieldChange(field="hotlist_ids", added=[str(h) for h in sorted(set(initial))])
        )
    entries = [first, *replay.entries]
    final = replay.state
    closed_at = replay.closed_at
    if not is_open(v1.Status(final["status"])):
        closed_at = _when(request.closed_at) or closed_at or created_at
    modified_at = _when(request.modified_at) or entries[-1].created_at
    values: list[Any] = [
        final["title"], final["status"], final["priority"], final["severity"], final["type"],
        final["component_id"], request.reporter, final["assignee"], final["verifier"],
        final["cc"], _description(request.description, replay), created_at, modified_at,
        closed_at, len(entries), sum(1 for e in entries if e.comment and not e.edits_version),
        _all_text(entries),
        _custom_values.dump_values(custom), request.external_id, len(request.history),
    ]  # fmt: skip
    if ctx.new_issue_id is None:
        issue_id = await ctx.conn.fetchval(iq.INSERT_IMPORTED, *values)
    else:
        new_id = await ctx.new_issue_id(ctx.conn)
        issue_id = await ctx.conn.fetchval(iq.INSERT_IMPORTED_WITH_ID, *values, new_id)
    if issue_id is None:
        raise Unavailable(
            f"{request.external_id} was imported by a concurrent call just now; "
            "import it again to append what that call did not",
        )
    await _custom_values.sync_rows(
        ctx.conn, issue_id, before={}, after=custom, moved=True, status_changed=True,
        component_id=final["component_id"], status=final["status"],
    )  # fmt: skip
    # The hotlists the issue ends on are the ones whose items change, as on
    # a refresh; the others the entries name (the initial ones included)
    # need only exist.
    labels.named.update(initial)
    path = "initial_hotlist_ids/history" if on_hotlists else "hotlist_ids"
    await labels.check_hotlists(ctx, set(labels.hotlists), path)
    for hotlist_id in sorted(labels.hotlists):
        await append_to_hotlist(ctx, hotlist_id, issue_id, "")
    await _write_entries(ctx, issue_id, 1, entries, external_id=request.external_id, files=files)
    if replay.relations is not None:
        await write_relations(ctx, issue_id, request.external_id, replay.relations, creating=True)
    await _mentions.sync(ctx.conn, issue_id)
    return int(issue_id), True, len(entries)


async def _extend(
    ctx: WriteContext, request: v1.ImportIssueRequest, row: Any, files: Files
) -> tuple[int, bool, int]:
    issue_id = int(row["id"])
    created_at = _when(request.created_at)
    if created_at is not None and created_at != row["created_at"]:
        # A source's issue keeps its creation time; another one with the same
        # external id (a second Trac environment's ticket 12) must not be
        # taken for it, its history appended to an unrelated issue.
        raise FailedPrecondition(
            f"external_id: {request.external_id} is issue {issue_id}, imported from an issue "
            f"created {row['created_at'].isoformat()}, not {created_at.isoformat()}: another "
            "source with the same external ids? Give each source its own name"
        )
    position = int(row["import_position"])
    newer = request.history[position:]
    if not newer:
        return issue_id, False, 0
    state = {name: row[name] for name in _SCALARS}
    state["cc"] = sorted(row["cc"])
    replay = _Replay(state, row["closed_at"])
    labels = LabelReplay(
        _custom_values.load_values(row["custom_fields"]),
        await hotlists_of(ctx, issue_id, newer),
    )
    items = list(enumerate(newer, start=position))
    resolved = await resolve(ctx, request.external_id, issue_id, items)
    if changes_relations(items):
        relations = {name: row[name] for name in ("parent_id", "duplicate_of_id")}
        relations.update(blocking_ids=list(row["blocking_ids"]))
        relations.update(blocked_by_ids=list(row["blocked_by_ids"]))
        replay.relations = RelationReplay(relations, resolved)
    for i, item in items:
        after = _component_after(item, replay.state["component_id"])
        moved = after != replay.state["component_id"]
        replay.apply(i, item, await labels.apply(ctx, item, after, i, moved=moved))
    if not replay.entries:
        await ctx.conn.execute(iq.ADVANCE_IMPORT_POSITION, issue_id, len(request.history))
        return issue_id, False, 0
    if replay.components:
        await _check_components(ctx, replay.components, request.external_id)
    await labels.check_final(ctx, replay.state["component_id"], "history")
    final = replay.state
    closed_at = replay.closed_at
    if not is_open(v1.Status(final["status"])):
        closed_at = _when(request.closed_at) or closed_at
    latest = _when(request.modified_at) or replay.entries[-1].created_at
    modified_at = max(row["modified_at"], latest)
    version = int(row["version"])
    await ctx.conn.execute(
        iq.UPDATE_IMPORTED,
        issue_id, final["title"], final["status"], final["priority"], final["severity"],
        final["type"], final["component_id"], final["assignee"], final["verifier"], final["cc"],
        closed_at, modified_at, version + len(replay.entries),
        sum(1 for e in replay.entries if e.comment and not e.edits_version),
        _all_text(replay.entries), len(request.history),
    )  # fmt: skip
    if replay.description is not None:
        await ctx.conn.execute(iq.SET_IMPORTED_DESCRIPTION, issue_id, replay.description)
    custom = _custom_values.load_values(row["custom_fields"])
    if labels.custom != custom:
        await ctx.conn.execute(
            iq.SET_IMPORTED_CUSTOM_FIELDS, issue_id, _custom_values.dump_values(labels.custom)
        )
    await labels.write(ctx, issue_id)
    await _custom_values.sync_rows(
        ctx.conn, issue_id, before=custom, after=labels.custom,
        moved=final["component_id"] != row["component_id"],
        status_changed=final["status"] != row["status"],
        component_id=final["component_id"], status=final["status"],
    )  # fmt: skip
    await _write_entries(
        ctx, issue_id, version + 1, replay.entries, external_id=request.external_id, files=files
    )
    if replay.relations is not None:
        await write_relations(ctx, issue_id, request.external_id, replay.relations, creating=False)
    await _mentions.sync(ctx.conn, issue_id)
    return issue_id, False, len(replay.entries)
