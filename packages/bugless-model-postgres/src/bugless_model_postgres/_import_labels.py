"""An import's label changes: the hotlists and custom field values its history sets.

A source's labels (Trac keywords, Redmine trackers, GitHub labels) are mapped
by the importer to hotlists and custom field values; :class:`LabelReplay`
replays their changes entry by entry for :mod:`._imports`, as native edits of
the hotlists or fields would record them, and writes the hotlists the issue
ends on. Apart from the rest of the replay because every step of it reads the
database (a component's fields, a hotlist's rights), where the scalar fields'
replay is pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bugless_core.errors import InvalidArgument
from bugless_model_postgres import _collection_queries as cq
from bugless_model_postgres import _custom_fields
from bugless_model_postgres import _import_queries as iq
from bugless_model_postgres._components import seen_path
from bugless_model_postgres._context import WriteContext, hotlist_not_found, hotlist_visible
from bugless_model_postgres._issue_plan import lock_editable_hotlists
from bugless_model_postgres._issues import append_to_hotlist, leave_hotlist
from bugless_proto import v1


async def hotlists_of(
    ctx: WriteContext, issue_id: int, items: Sequence[v1.ImportedEntry]
) -> set[int]:
    """The hotlists the issue is in, when ``items`` join or leave any."""
    if not any(i.hotlist_add or i.hotlist_remove for i in items):
        return set()
    return {r["hotlist_id"] for r in await ctx.conn.fetch(iq.ISSUE_HOTLIST_IDS, issue_id)}


@dataclass
class LabelReplay:
    """The source's label changes: hotlists and custom field values.

    On a refresh the entries appended carry what the source's labels did
    since, each written as a change of its entry (its author and time), as a
    native edit of the hotlists or fields records. At creation the entries'
    changes are replayed the same way when the request says so
    (``hotlists_replayed``, ``custom_fields_replayed``: the issue starts
    from ``initial_hotlist_ids``, ``initial_custom_fields``); otherwise the
    issue takes ``hotlist_ids`` and ``custom_fields``, the mapping of its
    labels then, and those changes are not replayed.
    """

    custom: dict[str, Any]
    hotlists: set[int]
    before: set[int] = field(default_factory=set)
    hotlists_replayed: bool = True
    custom_replayed: bool = True
    #: Every hotlist a change of an entry names (:meth:`check_hotlists`).
    named: set[int] = field(default_factory=set)
    #: Whether the call planned custom values (:meth:`check_final` then checks them).
    planned: bool = False

    def __post_init__(self) -> None:
        self.before = set(self.hotlists)

    async def apply(
        self,
        ctx: WriteContext,
        item: v1.ImportedEntry,
        component_id: int,
        index: int,
        *,
        moved: bool,
    ) -> list[v1.FieldChange]:
        """The item's hotlist and custom field changes (none for what already holds).

        ``component_id`` is the issue's component once the item is applied:
        the source's labels are mapped to the fields of the component the
        issue is in after the entry's move. ``moved``: the item moves the
        issue there, and its values follow as in a live ChangeIssue move:
        those of fields that do not apply there leave the issue and its
        fields without a value take their defaults. A required field may
        be without a value here: the entry is history, a state the issue
        passed through (an admin may have made the field required since),
        not an edit made now; the state the issue ends in must hold one
        (:meth:`check_final`).
        """
        changes: list[v1.FieldChange] = []
        added = sorted(set(item.hotlist_add) - self.hotlists) if self.hotlists_replayed else []
        removed = sorted(set(item.hotlist_remove) & self.hotlists) if self.hotlists_replayed else []
        if added or removed:
            self.hotlists = (self.hotlists | set(added)) - set(removed)
            self.named.update(added, removed)
            changes.append(
                v1.FieldChange(
                    field="hotlist_ids",
                    added=[str(h) for h in added],
                    removed=[str(h) for h in removed],
                )
            )
        if self.custom_replayed and (item.custom_fields or moved):
            self.custom, custom_changes, _ = await _custom_fields.plan_values(
                ctx, component_id=component_id, current=self.custom, given=item.custom_fields,
                creating=False, moved=moved, path=f"history[{index}].custom_fields",
                check_required=False,
            )  # fmt: skip
            self.planned = True
            changes.extend(custom_changes)
        return changes

    async def check_final(self, ctx: WriteContext, component_id: int, path: str) -> None:
        """The issue's values as it ends (in ``component_id``) hold every field required there.

        Only when the call planned values (:attr:`planned`): a creation
        replaying custom fields always (its state is new, as a native
        create's, which plans whenever the component has fields: created
        where a field is required, it needs the value as one moved there
        does); a refresh when it sets values or moves the issue, as a native
        change checks them only then (new comments on an issue imported
        before a field became required are taken). The states the history
        only passed through are not checked (:meth:`apply`): a component the
        issue left requiring a field today does not refuse it.

        Raises:
            InvalidArgument: a required field of ``component_id`` has no
                value, naming the field, the component and what to do.
        """
        if not self.planned:
            return
        fields = await _custom_fields.applicable(ctx.conn, component_id)
        for required in (f for f in fields.values() if f.required):
            if str(required.id) in self.custom:
                continue
            row = await ctx.conn.fetchrow(iq.IMPORT_COMPONENTS, [component_id])
            where = await seen_path(ctx.conn, ctx.caller, row) if row else str(component_id)
            raise InvalidArgument(
                f"{path}: custom field {required.name!r} (id {required.id}) is required in "
                f"{where}, where the issue ends, and it ends without a value for it (one "
                "required only where its history passed through is not asked for): give its "
                "last state a value (a source label the mapping maps to it), or the field a "
                "default, then import again",
                metadata={"field": path, "custom_field_id": str(required.id)},
            )

    async def check_hotlists(self, ctx: WriteContext, changed: set[int], path: str) -> None:
        """Lock ``changed``, the hotlists whose items the call changes; check the others named.

        As for a native edit, the caller must be able to edit a hotlist the
        issue joins or leaves, and it is locked (after the issue: lock
        order). A hotlist the history joins and leaves again (or the
        reverse) is the same before and after the call: its items are not
        touched, so it is neither locked nor needs edit rights, at creation
        as on a refresh, but the entries name it, so it must exist (and be
        visible to the caller): NOT_FOUND otherwise, as for one changed.
        """
        await lock_editable_hotlists(ctx, sorted(changed), path)
        for hotlist_id in sorted(self.named - changed):
            row = await ctx.conn.fetchrow(cq.HOTLIST_BY_ID, hotlist_id)
            if row is None or not hotlist_visible(ctx.caller, row):
                raise hotlist_not_found(hotlist_id, path)

    async def write(self, ctx: WriteContext, issue_id: int) -> None:
        """Join and leave the hotlists (:meth:`check_hotlists` checks them first)."""
        joined = sorted(self.hotlists - self.before)
        left = sorted(self.before - self.hotlists)
        await self.check_hotlists(ctx, {*joined, *left}, "history.hotlist_add")
        for hotlist_id in joined:
            await append_to_hotlist(ctx, hotlist_id, issue_id, "")
        for hotlist_id in left:
            await leave_hotlist(ctx, hotlist_id, issue_id)
