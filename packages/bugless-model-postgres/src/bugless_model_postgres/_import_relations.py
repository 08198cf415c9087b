"""The relation changes of an imported history: parent, duplicate, blocking.

A source names the other issue of a relation by its own id, so an imported
entry names it by a reference: the external id an earlier import gave it
(``trac:12``) or a bugless id (``123``). :func:`resolve` maps them all in
one statement, in the importing transaction; a reference to no issue is
refused (InvalidArgument naming the entry), so the import writes nothing
rather than an entry that lost its relation. The other issue is therefore
always imported first: importers send such an entry in a second pass.

:class:`RelationReplay` then applies the changes entry by entry with the
rules a native change follows (a relation already held changes nothing,
FieldChanges with bugless ids) and :func:`write_relations` writes the end
state. Blocking is two-way, as :mod:`._issues` keeps it: each entry that
changes it gives the other issue an entry of its own, caused by this one,
at the source's time unless the other issue's last entry is later (its
entries stay in time order). A source that logs a blocking change on both
issues is therefore imported from one side only (the blocked issue's), or
the other side's own record would find the relation already held, or
removed again, by then.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bugless_core.errors import FailedPrecondition, InvalidArgument
from bugless_model_postgres import _import_queries as iq
from bugless_model_postgres import _queries as q
from bugless_model_postgres._context import WriteContext
from bugless_model_postgres._convert import changes_to_json, scalar_text
from bugless_model_postgres._issue_plan import list_change
from bugless_proto import v1

#: Reference-valued scalar relations: update_mask path -> the entry's field.
SCALAR_RELATIONS = {"parent_id": "parent", "duplicate_of_id": "duplicate_of"}
#: Relation lists: the issue's list -> (entry's add field, remove field).
LIST_RELATIONS = {
    "blocking_ids": ("blocking_add", "blocking_remove"),
    "blocked_by_ids": ("blocked_by_add", "blocked_by_remove"),
}
#: The other side of a list: A blocking B is B blocked by A.
_MIRROR = {"blocking_ids": "blocked_by_ids", "blocked_by_ids": "blocking_ids"}
_SELF = {
    "parent_id": "be its own parent",
    "duplicate_of_id": "be a duplicate of itself",
    "blocking_ids": "block itself",
    "blocked_by_ids": "be blocked by itself",
}


def _references(index: int, item: v1.ImportedEntry) -> list[tuple[str, str, str]]:
    """The entry's references: (path, relation field, reference), in field order."""
    where = f"history[{index}]"
    found: list[tuple[str, str, str]] = []
    paths = set(item.update_mask.paths) if item.update_mask else set()
    for name, value_field in SCALAR_RELATIONS.items():
        value = getattr(item, value_field)
        if name in paths and value:
            found.append((f"{where}.{value_field}", name, value))
    for name, (add, remove) in LIST_RELATIONS.items():
        for list_field in (add, remove):
            for j, value in enumerate(getattr(item, list_field)):
                found.append((f"{where}.{list_field}[{j}]", name, value))
    return found


async def resolve(
    ctx: WriteContext,
    external_id: str,
    issue_id: int,
    items: Sequence[tuple[int, v1.ImportedEntry]],
) -> dict[str, int]:
    """Every reference of ``items`` (index, entry) as a bugless issue id.

    Raises:
        InvalidArgument: a reference names no issue (not imported yet, or
            never), or names the importing issue itself; the message names the
            entry and the reference.
    """
    named = [ref for index, item in items for ref in _references(index, item)]
    if not named:
        return {}
    texts = sorted({value for _, _, value in named})
    numbers = sorted({int(value) for value in texts if value.isdigit()})
    rows = await ctx.conn.fetch(
        iq.ISSUES_BY_REFERENCE, [v for v in texts if not v.isdigit()], numbers
    )
    resolved: dict[str, int] = {}
    for row in rows:
        if row["external_id"]:
            resolved[row["external_id"]] = int(row["id"])
        resolved.setdefault(str(row["id"]), int(row["id"]))
    for path, name, value in named:
        target = resolved.get(value)
        if value == external_id or (issue_id and target == issue_id):
            raise InvalidArgument(
                f"{path}: {value} is the issue being imported ({external_id}); "
                f"an issue cannot {_SELF[name]}",
                metadata={"field": path},
            )
        if target is None:
            raise InvalidArgument(
                f"{path}: {value} names no issue in bugless: import that issue first, then "
                "the entry that relates to it (nothing of "
                f"{external_id} was written)",
                metadata={"field": path},
            )
    return resolved


async def lock_touched_in_id_order(ctx: WriteContext, request: v1.ImportIssueRequest) -> None:
    """Lock the imported issue and the issues its new entries' blocking names, in id order.

    ChangeIssue locks every issue it touches in one statement, in id order
    (``LOCK_ISSUES``); an import extending its issue otherwise locks that
    issue's row first (:data:`._import_queries.IMPORTED_ISSUE`) and the other issues when
    it writes their sides (:func:`write_relations`). Against a native change
    touching the same two issues, with the other one's id lower, each would
    hold one and wait for the other: a deadlock (40P01). Called before that
    read, for a request whose history names issues: the other issues are
    those its entries past the issue's import position name in blocking
    (a superset of those whose lists change). A reference to no issue raises
    here as it would later. A new issue (none under the external id yet)
    is not visible to a native change, so nothing is locked for it.
    """
    if not any(_list_references(item) for item in request.history):
        return
    found = await ctx.conn.fetchrow(iq.IMPORTED_ISSUE_POSITION, request.external_id)
    if found is None:
        return
    issue_id, position = int(found["id"]), int(found["import_position"])
    items = list(enumerate(request.history[position:], start=position))
    references = [value for _, item in items for value in _list_references(item)]
    if not references:
        return
    resolved = await resolve(ctx, request.external_id, issue_id, items)
    touched = {issue_id, *(resolved[value] for value in references)}
    await ctx.conn.execute(q.LOCK_ISSUES, sorted(touched))


def _list_references(item: v1.ImportedEntry) -> list[str]:
    """The references of an entry's blocking changes (those that write another issue)."""
    return [
        value
        for add, remove in LIST_RELATIONS.values()
        for value in (*getattr(item, add), *getattr(item, remove))
    ]


@dataclass
class _OtherEntry:
    """One entry's change of the other issue's blocking lists (this issue added/removed)."""

    index: int
    author: str
    at: datetime
    #: The other issue's list -> True: this issue added to it, False: removed.
    lists: dict[str, bool] = field(default_factory=dict)


@dataclass
class RelationReplay:
    """The relations while the history is applied, and what the other issues get.

    ``state`` holds parent_id, duplicate_of_id, blocking_ids and
    blocked_by_ids as the issue row does.
    """

    state: dict[str, Any]
    resolved: dict[str, int]
    changed: bool = False
    #: Other issue id -> its entries, in this history's order.
    others: dict[int, list[_OtherEntry]] = field(default_factory=dict)
    #: Relation field -> the path of the entry that set it last (for a cycle's error).
    set_by: dict[str, str] = field(default_factory=dict)

    def apply(self, index: int, item: v1.ImportedEntry, at: datetime) -> list[v1.FieldChange]:
        """The entry's relation FieldChanges (none for what already holds)."""
        changes: list[v1.FieldChange] = []
        paths = set(item.update_mask.paths) if item.update_mask else set()
        for name, value_field in SCALAR_RELATIONS.items():
            if name not in paths:
                continue
            reference = getattr(item, value_field)
            value = self.resolved[reference] if reference else 0
            old = self.state[name]
            if value == old:
                continue
            self.state[name] = value
            self.changed = True
            self.set_by[name] = f"history[{index}].{value_field}"
            changes.append(
                v1.FieldChange(
                    field=name, old_value=scalar_text(name, old), new_value=scalar_text(name, value)
                )
            )
        for name, (add, remove) in LIST_RELATIONS.items():
            current = set(self.state[name])
            added = sorted({self.resolved[r] for r in getattr(item, add)} - current)
            removed = sorted({self.resolved[r] for r in getattr(item, remove)} & current)
            if not added and not removed:
                continue
            self.state[name] = sorted((current | set(added)) - set(removed))
            self.changed = True
            changes.append(list_change(name, added, removed))
            for other, joined in [*((o, True) for o in added), *((o, False) for o in removed)]:
                entries = self.others.setdefault(other, [])
                if not entries or entries[-1].index != index:
                    entries.append(_OtherEntry(index, item.author, at))
                entries[-1].lists[_MIRROR[name]] = joined
        return changes


def changes_relations(items: Sequence[tuple[int, v1.ImportedEntry]]) -> bool:
    """Whether any of ``items`` (index, entry) changes a relation.

    Not the same as naming an issue: an entry that only clears the parent or
    the duplicate (its path in the mask, no reference) names none.
    """
    for index, item in items:
        paths = set(item.update_mask.paths) if item.update_mask else set()
        if paths.intersection(SCALAR_RELATIONS) or _references(index, item):
            return True
    return False


def initial_relations() -> dict[str, Any]:
    """A new imported issue's relations: none (they come with its history)."""
    return {"parent_id": 0, "duplicate_of_id": 0, "blocking_ids": [], "blocked_by_ids": []}


async def _check_cycles(ctx: WriteContext, issue_id: int, replay: RelationReplay) -> None:
    """The parent and duplicate chains the history leaves stay acyclic."""
    for name, sql, relation in (
        ("parent_id", q.PARENT_CHAIN_REACHES, "descendant"),
        ("duplicate_of_id", q.DUPLICATE_CHAIN_REACHES, "duplicate"),
    ):
        target = replay.state[name]
        if not target or name not in replay.set_by:
            continue
        if ctx.dialect.hierarchy_lock is not None:
            await ctx.conn.execute(ctx.dialect.hierarchy_lock)
        if await ctx.conn.fetchval(sql, target, issue_id):
            path = replay.set_by[name]
            raise FailedPrecondition(
                f"{path}: issue {target} is a {relation} of issue {issue_id}; "
                f"{name} would close a cycle",
                metadata={"field": path},
            )


async def write_relations(
    ctx: WriteContext, issue_id: int, external_id: str, replay: RelationReplay, *, creating: bool
) -> None:
    """Write the issue's relations and the other issues' sides of its blocking changes."""
    if not replay.changed:
        return
    if not creating:
        await _check_cycles(ctx, issue_id, replay)
    state = replay.state
    await ctx.conn.execute(
        iq.SET_IMPORTED_RELATIONS, issue_id, state["parent_id"], state["duplicate_of_id"],
        state["blocking_ids"], state["blocked_by_ids"],
    )  # fmt: skip
    if not replay.others:
        return
    others = sorted(replay.others)
    await ctx.conn.execute(q.LOCK_ISSUES, others)
    rows = {r["id"]: r for r in await ctx.conn.fetch(iq.IMPORT_OTHER_SIDES, others)}
    for other in others:
        await _write_other_side(ctx, issue_id, external_id, rows[other], replay.others[other])


async def _write_other_side(
    ctx: WriteContext, issue_id: int, external_id: str, row: Any, entries: list[_OtherEntry]
) -> None:
    lists = {name: set(row[name]) for name in LIST_RELATIONS}
    version = int(row["version"])
    latest: datetime = row["last_entry_at"] or row["modified_at"]
    versions: list[int] = []
    authors: list[str] = []
    times: list[datetime] = []
    changes: list[str] = []
    for entry in entries:
        entry_changes = []
        for name, joined in sorted(entry.lists.items()):
            if joined == (issue_id in lists[name]):
                continue
            if joined:
                lists[name].add(issue_id)
            else:
                lists[name].discard(issue_id)
            entry_changes.append(
                list_change(name, [issue_id] if joined else [], [] if joined else [issue_id])
            )
        if not entry_changes:
            continue
        version += 1
        latest = max(latest, entry.at)
        versions.append(version)
        authors.append(entry.author)
        times.append(latest)
        changes.append(changes_to_json(entry_changes))
    if not versions:
        return
    other = int(row["id"])
    await ctx.conn.execute(
        iq.UPDATE_IMPORTED_OTHER_SIDE, other, sorted(lists["blocking_ids"]),
        sorted(lists["blocked_by_ids"]), max(latest, row["modified_at"]), version,
    )  # fmt: skip
    await ctx.conn.execute(
        iq.INSERT_IMPORTED_CAUSED_ENTRIES, other, versions, authors, times, changes, external_id,
        issue_id,
    )  # fmt: skip
    if ctx.dialect.notify is not None:
        await ctx.conn.execute(iq.NOTIFY_ENTRIES, ctx.channel, other, versions)
    ctx.written.extend((other, v) for v in versions)
