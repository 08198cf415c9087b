"""Custom fields on the web's forms and pages.

A custom field is defined on a component and applies to its subtree; an
issue's values travel as text (``CustomFieldValue.values``), people as opaque
ids. Forms show people by username and read them back, like the built-in
person fields. Every form that edits custom fields names the fields it
shows in a hidden ``cf_fields`` input, so an unticked multi-choice field
(which a browser does not submit at all) still reads as "no value" rather
than "not on the form".

The type rules themselves (what an integer or a day looks like, option
matching) are :mod:`bugless_core.custom_fields`'s, so a form shows the
message the Model would give.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bugless_core import custom_fields as cf
from bugless_core.clients import call
from bugless_core.errors import InvalidArgument
from bugless_proto import v1
from bugless_web.backends import Backends, Viewer
from bugless_web.form_errors import FieldErrors, input_name, message_without_path

#: The hidden input listing the custom field ids a form shows.
FIELDS_INPUT = "cf_fields"
#: Form values per custom field id (usernames for user fields), in form order.
CustomValues = dict[int, tuple[str, ...]]
_MAX_FIELDS = 200


def form_field_names(fields: Iterable[v1.CustomField]) -> tuple[str, ...]:
    """The input names of ``fields`` (for a form's :class:`FieldErrors`)."""
    return tuple(input_name(f.id) for f in fields)


async def applicable_fields(
    backends: Backends, viewer: Viewer, component_id: int
) -> list[v1.CustomField]:
    """The custom fields that apply to a component's issues (root's first); none for 0."""
    if not component_id:
        return []
    response = await call(
        backends.model.list_custom_fields,
        v1.ListCustomFieldsRequest(caller=viewer.caller, component_id=component_id),
    )
    return list(response.custom_fields)


async def fields_of_components(
    backends: Backends, viewer: Viewer, component_ids: Iterable[int], *, limit: int = 20
) -> list[v1.CustomField]:
    """The fields that apply to any of the components, each once, by name then id.

    Read from the viewer's cached list of every field they see
    (:func:`visible_fields`, one ``ListCustomFields`` a page of 500 fields
    per cache period) and their cached component tree: a field applies to a
    component when it is defined there or on an ancestor. Asking each
    component made one call per component of a result page, and offered only
    the fields of its first 20. A component whose ancestry the tree cannot
    give (under a component the viewer cannot view, or created since the
    tree was read) is asked on its own (:meth:`Backends.custom_fields`,
    cached), at most ``limit`` of them.
    """
    wanted = set(component_ids) - {0}
    if not wanted:
        return []
    visible, lineages = await asyncio.gather(
        backends.visible_custom_fields(viewer),
        backends.from_components(viewer, "custom field lineages", _lineages),
    )
    applying: set[int] = set()
    unknown: list[int] = []
    for component_id in sorted(wanted):
        lineage = lineages.get(component_id)
        if lineage is None:
            unknown.append(component_id)
        else:
            applying.update(lineage)
    by_id = {f.id: f for f in visible if f.component_id in applying}
    lists: list[Sequence[v1.CustomField]] = []
    missing: list[int] = []
    for component_id in unknown[:limit]:
        cached = backends.cached_custom_fields(viewer, component_id)
        if cached is None:
            missing.append(component_id)
        else:
            lists.append(cached)
    if missing:
        lists += await asyncio.gather(*(backends.custom_fields(viewer, c) for c in missing))
    by_id.update((f.id, f) for fields in lists for f in fields)
    return sorted(by_id.values(), key=lambda f: (f.name.casefold(), f.id))


async def fields_of_component(
    backends: Backends, viewer: Viewer, component_id: int
) -> list[v1.CustomField]:
    """The fields that apply to a component's issues, root's first (none for 0).

    What the issue page's form shows: read, as :func:`fields_of_components`
    is, from the viewer's one cached list of every field they see filtered
    by the component's ancestry in the cached tree, in the Model's order
    (``ListCustomFields``: by the defining component from the root down,
    then by id). A cache per component held the same definitions again. A
    component whose ancestry the tree cannot give is asked on its own
    (:meth:`Backends.custom_fields`, cached).
    """
    if not component_id:
        return []
    visible, lineages = await asyncio.gather(
        backends.visible_custom_fields(viewer),
        backends.from_components(viewer, "custom field lineages", _lineages),
    )
    lineage = lineages.get(component_id)
    if lineage is None:
        return await backends.custom_fields(viewer, component_id)
    depth = {c: i for i, c in enumerate(reversed(lineage))}  # the root is 0
    applying = (f for f in visible if f.component_id in depth)
    return sorted(applying, key=lambda f: (depth[f.component_id], f.id))


def _lineages(tree: Sequence[v1.Component]) -> dict[int, tuple[int, ...]]:
    """Each component's id, then its ancestors' up to the root, when all of them are in ``tree``.

    A component under one the viewer cannot view is left out: the tree does
    not say what is above the hidden one, whose fields may apply.
    """
    parents = {c.id: c.parent_id for c in tree}
    lineages: dict[int, tuple[int, ...]] = {}
    for component in tree:
        chain = [component.id]
        parent = component.parent_id
        while parent and parent in parents and parent not in chain:
            chain.append(parent)
            parent = parents[parent]
        if not parent:
            lineages[component.id] = tuple(chain)
    return lineages


async def visible_fields(backends: Backends, viewer: Viewer) -> list[v1.CustomField]:
    """Every custom field that applies to a component ``viewer`` sees, each once, by name.

    The Model lists them for the viewer's whole tree in one paged call
    (:meth:`~bugless_web.viewer_caches.ViewerCaches.visible_custom_fields`,
    cached per viewer like the tree): a page of up to 500 fields a call,
    however many components there are. Asking each leaf of the tree made one
    call per leaf, thousands per viewer on a large tree.
    """
    fields = await backends.visible_custom_fields(viewer)
    return sorted(fields, key=lambda f: (f.name.casefold(), f.id))


def user_ids(values: Iterable[v1.CustomFieldValue]) -> set[str]:
    """The user ids held by user-typed values (to look their names up in one batch)."""
    return {
        user
        for value in values
        if value.type is v1.CustomFieldType.USER
        for user in value.values
        if user
    }


def issue_values(issue: v1.Issue, users: Mapping[str, v1.User]) -> CustomValues:
    """An issue's custom values as a form shows them (usernames for user fields)."""
    shown: CustomValues = {}
    for value in issue.custom_fields:
        if value.type is v1.CustomFieldType.USER:
            shown[value.field_id] = tuple(
                users[u].username if u in users else u for u in value.values
            )
        else:
            shown[value.field_id] = tuple(value.values)
    return shown


def read_form(form: Any, prefix: str = "") -> CustomValues:
    """The custom values a submitted form holds, for the fields it lists in ``cf_fields``.

    Raises:
        InvalidArgument: ``cf_fields`` is malformed (only a hand-made request).
    """
    listed = str(form.get(FIELDS_INPUT, "") or "").split()
    if len(listed) > _MAX_FIELDS or not all(part.isascii() and part.isdigit() for part in listed):
        raise InvalidArgument(f"{FIELDS_INPUT}: a list of custom field ids; reload the form")
    values: CustomValues = {}
    for part in listed:
        field_id = int(part)
        typed = [str(v).strip() for v in form.getall(prefix + input_name(field_id), [])]
        values[field_id] = tuple(v for v in typed if v)
    return values


def usernames(fields: Iterable[v1.CustomField], values: CustomValues) -> set[str]:
    """The usernames typed into user fields (to resolve in one batch)."""
    return {
        name
        for f in fields
        if f.type is v1.CustomFieldType.USER
        for name in values.get(f.id, ())
        if name
    }


def to_wire(
    fields: Sequence[v1.CustomField],
    values: CustomValues,
    people: Mapping[str, v1.User],
    errors: FieldErrors,
) -> list[v1.CustomFieldValue]:
    """Form values as the wire's values, checking each against its field's type.

    Fields the form did not list are left out; a problem is recorded on the
    field's input (its value read as unusable and left out).
    """
    out: list[v1.CustomFieldValue] = []
    for f in fields:
        if f.id not in values:
            continue
        typed = list(values[f.id])
        name = input_name(f.id)
        if f.type is v1.CustomFieldType.USER:
            unknown = [u for u in typed if u not in people]
            if unknown:
                errors.add(name, f"no user named {', '.join(map(repr, unknown))}")
                continue
            typed = [people[u].user_id for u in typed]
        try:
            normalized = cf.normalize_values(f, typed, name)
        except InvalidArgument as exc:
            errors.add(name, message_without_path(exc.message), typed=", ".join(values[f.id]))
            continue
        out.append(v1.CustomFieldValue(field_id=f.id, values=normalized))
    return out


def changed(
    wanted: Sequence[v1.CustomFieldValue], current: Iterable[v1.CustomFieldValue]
) -> list[v1.CustomFieldValue]:
    """The values of ``wanted`` that differ from the issue's ``current`` ones."""
    now = {v.field_id: list(v.values) for v in current}
    return [v for v in wanted if list(v.values) != now.get(v.field_id, [])]


def shown(value: v1.CustomFieldValue | None) -> list[str]:
    """A value's parts for display (empty: no value)."""
    return list(value.values) if value is not None else []


def labelled(fields: Iterable[v1.CustomField]) -> dict[str, str]:
    """Form labels of custom field inputs (for the problems summary)."""
    return {input_name(f.id): f.name for f in fields}


def user_history_fields(fields: Iterable[v1.CustomField]) -> set[str]:
    """History field names (``customfield12``) whose values are user ids.

    The fields that apply now say their type; a field since deleted (or left
    behind by a move to another component) does not, so its values show as
    they were stored (the history carries no types).
    """
    return {cf.history_field(f.id) for f in fields if f.type is v1.CustomFieldType.USER}
