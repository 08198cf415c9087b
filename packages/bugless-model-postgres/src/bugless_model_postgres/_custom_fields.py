"""Custom fields: definitions on components, values on issues.

A definition lives on a component and applies to the issues of its subtree
(found through the component's materialised ``path_ids``, no recursion).
Values live in ``issues.custom_fields`` as ``{"<field id>": value}`` (see the
migration), written by the same statement as the issue's other fields, so a
value change is part of the one history entry of its delta, with one
FieldChange per field (``customfield<ID>``, carrying the field's name so the
entry stays readable after the definition is deleted). Searches read the
values' rows in ``issue_custom_values`` (migration 0010), rewritten in the
same transaction (:func:`._custom_values.sync_rows`).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from bugless_core import custom_fields as cf
from bugless_core import limits
from bugless_core.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    VersionConflict,
)
from bugless_model_postgres import _field_holders as holders
from bugless_model_postgres._components import admin_needed, seen_path, visible_component
from bugless_model_postgres._context import WriteContext
from bugless_model_postgres._convert import Conn, Row, caller_role, one_row
from bugless_model_postgres._custom_values import (
    field_names,
)
from bugless_model_postgres._visibility import COMPONENT_VISIBLE
from bugless_proto import v1

#: Definitions that apply to component $1: its own and its ancestors', root first.
APPLICABLE_FIELDS = """
SELECT f.* FROM custom_fields f JOIN components c ON f.component_id = ANY (c.path_ids)
 WHERE c.id = $1
 ORDER BY array_position(c.path_ids, f.component_id), f.id
"""
#: The path of component $1, to name it in a refusal (an issue's component:
#: the caller sees it).
COMPONENT_PATH = "SELECT path FROM components WHERE id = $1"
#: ListCustomFields in one statement: component $1's effective ACL (to check
#: the caller may view it) with each field that applies, root's first; one
#: row of NULL fields when none apply, no row when the component is missing.
LIST_APPLICABLE = """
SELECT c.effective_acl AS component_acl, f.*
  FROM components c LEFT JOIN custom_fields f ON f.component_id = ANY (c.path_ids)
 WHERE c.id = $1
 ORDER BY array_position(c.path_ids, f.component_id), f.id
"""
#: ListCustomFields with all_visible: the fields after id $3 that apply to a
#: component the caller ($1 admin, $2 principals: ``viewers``, as
#: ListComponents filters) may view, archived ones included, by id, at most $4.
#: A field applies to the subtree of its component, whose ``path_ids`` name it.
LIST_ALL_VISIBLE = f"""
SELECT f.* FROM custom_fields f
 WHERE f.id > $3
   AND EXISTS (SELECT 1 FROM components c
                WHERE c.path_ids @> ARRAY[f.component_id]
                  AND {COMPONENT_VISIBLE.format(admin="$1", c="c", principals="$2::text[]")})
 ORDER BY f.id
 LIMIT $4
"""
FIELD_FOR_UPDATE = "SELECT * FROM custom_fields WHERE id = $1 FOR UPDATE"
#: The component defining field $1, locked before the field (see :func:`_field_for_change`).
COMPONENT_OF_FIELD_FOR_UPDATE = """
SELECT * FROM components WHERE id = (SELECT component_id FROM custom_fields WHERE id = $1)
   FOR UPDATE
"""
#: A field whose name folds to $2 (its ``name_key``, migration 0019) that
#: would apply together with one on component $3 (path $1): on an ancestor,
#: itself, or a descendant; other than field $4.
NAME_CLASH = """
SELECT f.id FROM custom_fields f JOIN components c ON c.id = f.component_id
 WHERE f.name_key = $2
   AND (c.id = ANY ($1::bigint[]) OR c.path_ids @> ARRAY[$3::bigint])
   AND f.id <> $4
 LIMIT 1
"""
COUNT_OWN = "SELECT count(*) FROM custom_fields WHERE component_id = $1"
INSERT_FIELD = """
INSERT INTO custom_fields (component_id, name, description, type, options, required,
                           default_values, created_at, modified_at, name_key)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9)
RETURNING *
"""
UPDATE_FIELD = """
UPDATE custom_fields
   SET name = $2, description = $3, options = $4, required = $5, default_values = $6,
       modified_at = $7, version = version + 1, name_key = $8
 WHERE id = $1
RETURNING *
"""
DELETE_FIELD = "DELETE FROM custom_fields WHERE id = $1"
#: Fields defined before migration 0019 (or by a replica of the release
#: before it since): their names not yet folded.
UNKEYED_FIELDS = "SELECT id, name FROM custom_fields WHERE name_key IS NULL"
#: Fields $1 keyed $2 (each folded from the name read, unless renamed since).
SET_NAME_KEYS = """
UPDATE custom_fields f SET name_key = k.name_key
  FROM unnest($1::bigint[], $2::text[], $3::text[]) AS k(id, name, name_key)
 WHERE f.id = k.id AND f.name = k.name AND f.name_key IS NULL
"""
#: Remove field $1's values from every issue (found through the search rows).
DROP_VALUES = """
UPDATE issues SET custom_fields = custom_fields - $1::bigint::text
 WHERE id IN (SELECT issue_id FROM issue_custom_values WHERE field_id = $1)
"""
DROP_ROWS = "DELETE FROM issue_custom_values WHERE field_id = $1"


def field_from_row(row: Row) -> v1.CustomField:
    """A custom_fields row as a CustomField."""
    return v1.CustomField(
        id=row["id"],
        component_id=row["component_id"],
        name=row["name"],
        description=row["description"],
        type=v1.CustomFieldType(row["type"]),
        options=list(row["options"]),
        required=row["required"],
        default_values=list(row["default_values"]),
        created_at=row["created_at"],
        modified_at=row["modified_at"],
        version=row["version"],
    )


#: :data:`APPLICABLE_FIELDS` as one json value (an array, root's first; NULL
#: when none apply), for a statement that reads component ``c`` and wants its
#: fields in the same round trip (BatchCreateIssues' checks). Named keys, not
#: a row of ``custom_fields``: asyncpg would decode an array of such rows
#: through the table's row type, cached per connection, so a migration
#: altering the table would fail a call on every pooled connection.
APPLICABLE_JSON = """
(SELECT json_agg(json_build_object(
            'id', f.id, 'component_id', f.component_id, 'name', f.name,
            'description', f.description, 'type', f.type, 'options', f.options,
            'required', f.required, 'default_values', f.default_values,
            'created_at', f.created_at, 'modified_at', f.modified_at, 'version', f.version)
        ORDER BY array_position(c.path_ids, f.component_id), f.id)
   FROM custom_fields f WHERE f.component_id = ANY (c.path_ids))
"""


def fields_from_json(text: str) -> dict[int, v1.CustomField]:
    """:data:`APPLICABLE_JSON`'s text as :func:`applicable` returns the fields, by id."""
    fields: dict[int, v1.CustomField] = {}
    for f in json.loads(text):
        fields[f["id"]] = v1.CustomField(
            id=f["id"],
            component_id=f["component_id"],
            name=f["name"],
            description=f["description"],
            type=v1.CustomFieldType(f["type"]),
            options=list(f["options"]),
            required=f["required"],
            default_values=list(f["default_values"]),
            created_at=datetime.datetime.fromisoformat(f["created_at"]),
            modified_at=datetime.datetime.fromisoformat(f["modified_at"]),
            version=f["version"],
        )
    return fields


async def applicable(conn: Conn, component_id: int) -> dict[int, v1.CustomField]:
    """The fields that apply to issues in ``component_id``, by id (root first)."""
    rows = await conn.fetch(APPLICABLE_FIELDS, component_id)
    return {row["id"]: field_from_row(row) for row in rows}


# ---- values in a create or a delta ----


def _change(field_id: int, name: str, kind: int, old: Any, new: Any) -> v1.FieldChange:
    before, after = cf.from_stored(old), cf.from_stored(new)
    field_type = v1.CustomFieldType(kind)
    if field_type in cf.MULTI_TYPES:
        return v1.FieldChange(
            field=cf.history_field(field_id),
            field_name=name,
            field_type=field_type,
            added=[v for v in after if v not in before],
            removed=[v for v in before if v not in after],
        )
    return v1.FieldChange(
        field=cf.history_field(field_id),
        field_name=name,
        field_type=field_type,
        old_value=cf.render(before),
        new_value=cf.render(after),
    )


async def plan_values(
    ctx: WriteContext,
    *,
    component_id: int,
    current: Mapping[str, Any],
    given: Sequence[v1.CustomFieldValue],
    creating: bool,
    moved: bool,
    path: str,
    fields: Mapping[int, v1.CustomField] | None = None,
    names: Mapping[int, tuple[str, int]] | None = None,
    check_required: bool = True,
) -> tuple[dict[str, Any], list[v1.FieldChange], dict[int, tuple[str, int]]]:
    """The issue's values after a create or delta, with one change per field.

    Values of fields that no longer apply (the issue moved) leave the issue;
    fields left without a value take their default on create or move, and a
    required field must end with a value (unless not ``check_required``: an
    import's replay of a state its history only passes through, whose final
    state is checked instead, :meth:`._import_labels.LabelReplay.check_final`).
    ``fields``: what :func:`applicable`
    returns for ``component_id``, when the caller read it already (a batch
    of creates reads it once per component). ``names``: the names and types
    of the fields ``current`` holds, when the caller read them with the
    issue (its ``custom_field_names``): the changes of the values a move
    drops are named from them, not by a look-up.

    Returns:
        The new stored values, their FieldChanges (by field id) and the names
        and types of every field involved.

    Raises:
        InvalidArgument: a field does not apply, a value does not fit, or a
            required field would be left without one.
    """
    if fields is None:
        fields = await applicable(ctx.conn, component_id)
    new = dict(current)
    known = {fid: (f.name, int(f.type)) for fid, f in fields.items()}
    dropped = [int(k) for k in new if int(k) not in fields]
    if dropped:
        if names is not None and all(fid in names for fid in dropped):
            known |= {fid: names[fid] for fid in dropped}
        else:
            known |= await field_names(ctx.conn, dropped)
        for fid in dropped:
            del new[str(fid)]
    set_here: set[int] = set()
    for i, item in enumerate(given):
        where = f"{path}[{i}]"
        field = fields.get(item.field_id)
        if field is None:
            component_path = await ctx.conn.fetchval(COMPONENT_PATH, component_id)
            raise InvalidArgument(
                f"{where}.field_id: custom field {item.field_id} does not apply to "
                f"{component_path or component_id!r}, the issue's component (a field applies "
                "to the issues of the component defining it and of the components below it)",
                metadata={"field": f"{where}.field_id"},
            )
        stored = cf.to_stored(field, cf.normalize_values(field, item.values, f"{where}.values"))
        if stored is None:
            if field.required and check_required:
                raise InvalidArgument(
                    f"{where}.values: custom field {field.name!r} is required; it cannot be "
                    "cleared",
                    metadata={"field": f"{where}.values"},
                )
            new.pop(str(field.id), None)
        else:
            new[str(field.id)] = stored
        set_here.add(field.id)
    if creating or moved:
        for field in fields.values():
            key = str(field.id)
            if key in new or field.id in set_here or not field.default_values:
                continue
            new[key] = cf.to_stored(field, field.default_values)
    for field in fields.values() if check_required else ():
        if field.required and str(field.id) not in new:
            raise InvalidArgument(
                f"{path}: custom field {field.name!r} (id {field.id}) is required and has no "
                "default: give it a value",
                metadata={"field": path, "custom_field_id": str(field.id)},
            )
    changes = [
        _change(int(key), *known.get(int(key), ("", 0)), current.get(key), new.get(key))
        for key in sorted(set(current) | set(new), key=int)
        if current.get(key) != new.get(key)
    ]
    return new, changes, known


# ---- definitions ----


async def _admin_component(ctx: WriteContext, component_id: int, field: str) -> asyncpg.Record:
    row, role = await visible_component(ctx, component_id, field, lock=True)
    if role < v1.Role.ADMIN:
        raise await admin_needed(ctx, row, "to define its custom fields")
    return row


async def _check_name(ctx: WriteContext, component: Row, name: str, field_id: int) -> None:
    clash = await ctx.conn.fetchval(
        NAME_CLASH, list(component["path_ids"]), name.casefold(), component["id"], field_id
    )
    if clash is not None:
        raise AlreadyExists(
            f"name: custom field {clash} is also named {name!r} and applies to the same issues "
            "(names are compared case-insensitively across a component, its ancestors and "
            "its subtree)",
            metadata={"field": "name", "custom_field_id": str(clash)},
        )


async def create_field(ctx: WriteContext, request: v1.CreateCustomFieldRequest) -> v1.CustomField:
    """Define a field on a component the caller administers."""
    component = await _admin_component(ctx, request.component_id, "component_id")
    if await ctx.conn.fetchval(COUNT_OWN, component["id"]) >= (
        limits.MAX_CUSTOM_FIELDS_PER_COMPONENT
    ):
        raise FailedPrecondition(
            f"component_id: component {await seen_path(ctx.conn, ctx.caller, component)} "
            "already defines "
            f"{limits.MAX_CUSTOM_FIELDS_PER_COMPONENT} custom fields, the most it may",
            metadata={"field": "component_id"},
        )
    await _check_name(ctx, component, request.name, 0)
    probe = v1.CustomField(name=request.name, type=request.type, options=list(request.options))
    defaults = cf.normalize_values(probe, request.default_values, "default_values")
    row = await ctx.conn.fetchrow(
        INSERT_FIELD, component["id"], request.name, request.description, int(request.type),
        list(request.options), request.required, defaults, ctx.now, request.name.casefold(),
    )  # fmt: skip
    return field_from_row(one_row(row))


async def _field_for_change(
    ctx: WriteContext, field_id: int, expected_version: int, path: str
) -> tuple[asyncpg.Record, asyncpg.Record]:
    """Lock field ``field_id`` and its component for a change by an admin of it.

    The component is locked first, then the field: the order in which a
    write setting a value takes them (a new issue's key holds its component,
    FOR KEY SHARE, before its value rows' key and migration 0015's trigger
    hold the field). Locking the field first, an update or deletion could
    hold it while waiting for such a write's component, and the write wait
    for the field: a deadlock, settled by aborting and retrying one of them.
    In this order the change waits for the write, then takes both.
    """
    component = await ctx.conn.fetchrow(COMPONENT_OF_FIELD_FOR_UPDATE, field_id)
    role = caller_role(ctx.caller, component["effective_acl"]) if component else None
    if component is None or role is None:
        raise field_not_found(field_id, path)
    if role < v1.Role.ADMIN:
        raise await admin_needed(ctx, component, "to define its custom fields")
    row = await ctx.conn.fetchrow(FIELD_FOR_UPDATE, field_id)
    if row is None:
        raise field_not_found(field_id, path)
    if expected_version and row["version"] != expected_version:
        raise VersionConflict.stale(
            f"custom field {field_id}",
            expected_version,
            row["version"],
            custom_field_id=str(field_id),
        )
    return row, component


def field_not_found(field_id: int, path: str = "") -> NotFound:
    """The one message shape for a missing or invisible custom field."""
    prefix = f"{path}: " if path else ""
    return NotFound(
        f"{prefix}custom field {field_id} not found", metadata={"custom_field_id": str(field_id)}
    )


async def update_field(
    ctx: WriteContext, request: v1.UpdateCustomFieldRequest, paths: Sequence[str]
) -> v1.CustomField:
    """Change the masked parts of a definition; refuse to drop an option in use.

    Options renamed in their case only ("Bug" to "bug") stay held, and the
    values holding them are respelled (:mod:`._field_holders`, which
    says why the issues holding them are locked before the field).
    """
    change = request.custom_field or v1.CustomField()
    if "options" in paths:
        committed = await holders.options_committed(ctx.conn, change.id)
        renamed = holders.renamed_spellings(committed or [], change.options)
        await holders.lock_holders(ctx.conn, change.id, renamed)
    row, component = await _field_for_change(
        ctx, change.id, request.expected_version, "custom_field.id"
    )
    current = field_from_row(row)
    updated = v1.CustomField(
        id=current.id,
        component_id=current.component_id,
        name=change.name if "name" in paths else current.name,
        description=change.description if "description" in paths else current.description,
        type=current.type,
        options=list(change.options) if "options" in paths else list(current.options),
        required=change.required if "required" in paths else current.required,
        default_values=list(change.default_values)
        if "default_values" in paths
        else list(current.default_values),
    )
    cf.check_definition(
        name=updated.name,
        field_type=updated.type,
        options=updated.options,
        default_values=updated.default_values,
        path="custom_field",
    )
    if updated.name.casefold() != current.name.casefold():
        await _check_name(ctx, component, updated.name, current.id)
    carried: dict[str, str] = {}
    if set(current.options) - set(updated.options):  # an option removed or respelled
        held = await holders.held_spellings(ctx.conn, current.id)
        folded = {v.casefold() for v in held}
        kept = {o.casefold() for o in updated.options}
        for option in current.options:
            if option.casefold() not in kept and option.casefold() in folded:
                raise FailedPrecondition(
                    f"custom_field.options: option {option!r} is set on issues; change those "
                    "issues first",
                    metadata={"field": "custom_field.options"},
                )
        carried = holders.carried_spellings(updated, held)
    defaults = cf.normalize_values(updated, updated.default_values, "custom_field.default_values")
    saved = await ctx.conn.fetchrow(
        UPDATE_FIELD, current.id, updated.name, updated.description, list(updated.options),
        updated.required, defaults, ctx.now, updated.name.casefold(),
    )  # fmt: skip
    await holders.carry(ctx.conn, current.id, carried)
    return field_from_row(one_row(saved))


async def delete_field(ctx: WriteContext, request: v1.DeleteCustomFieldRequest) -> None:
    """Delete a definition and its values (history entries keep theirs).

    The values are found through their search rows, whose key to the field
    (migration 0014) orders this against a write setting the field: a write
    that inserted a row first holds the field's row (FOR KEY SHARE) until
    it commits, so the lock here waits and the statements after it see the
    value; a write inserting after this lock waits for the commit and is
    refused (``run_write`` retries it: the field no longer applies).

    Locks are taken in the order writes take them (:mod:`._field_holders`):
    the issues holding a value first, then the component and the field
    (:func:`_field_for_change`), then, without waiting, the issues that
    gained a value meanwhile (their writes held the field, so they have
    committed; one a second write holds makes the deletion run again,
    rather than wait for a write that may be waiting for the field). The
    issues are locked before the caller's rights are checked, for the one
    statement it takes to refuse a caller who lacks them.
    """
    await holders.lock_holders(ctx.conn, request.field_id)
    await _field_for_change(ctx, request.field_id, request.expected_version, "field_id")
    await holders.lock_holders(ctx.conn, request.field_id, wait=False)
    await ctx.conn.execute(DROP_VALUES, request.field_id)
    await ctx.conn.execute(DROP_ROWS, request.field_id)
    await ctx.conn.execute(DELETE_FIELD, request.field_id)


async def fill_name_keys(pool: asyncpg.Pool) -> int:
    """Fold the names of the fields migration 0019 left without a key; how many were.

    The Model runs it right after migrating. Names are folded by
    ``str.casefold``, the rule terms name fields by (no SQL function folds
    so); a field renamed meanwhile keeps the key its rename wrote.
    """
    rows = await pool.fetch(UNKEYED_FIELDS)
    if rows:
        ids, names = [r["id"] for r in rows], [r["name"] for r in rows]
        await pool.execute(SET_NAME_KEYS, ids, names, [n.casefold() for n in names])
    return len(rows)
