"""``Name=value`` text (the CLI's ``--field``) as custom field values of a component."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from bugless_api.client._base import client_mistake
from bugless_core import custom_fields as cf
from bugless_proto import v1


def custom_values(
    fields: Sequence[v1.CustomField], specs: Iterable[str]
) -> list[v1.CustomFieldValue]:
    """The values ``specs`` set, each ``Name=value`` (or ``customfield<ID>=value``).

    The name is matched case-insensitively among ``fields`` (the fields that
    apply to the issue's component, from ``list_custom_fields``). An empty
    value clears the field; a multi-choice field takes a comma list
    (``OS=linux,mac``); a user field takes a username. The values are sent
    as typed: the Model checks them against the field's type.

    Raises:
        InvalidArgument: (a client mistake) a spec without ``=``, a name no
            field has, or a field named twice.
    """
    by_name = {f.name.casefold(): f for f in fields}
    by_key = {cf.history_field(f.id): f for f in fields}
    out: dict[int, v1.CustomFieldValue] = {}
    for spec in specs:
        name, equals, value = spec.partition("=")
        name = name.strip()
        if not equals or not name:
            raise client_mistake(f"field: {spec!r} is not Name=value")
        found = by_key.get(name.casefold()) or by_name.get(name.casefold())
        if found is None:
            known = ", ".join(repr(f.name) for f in fields) or "none"
            raise client_mistake(f"field: no custom field {name!r} applies here (known: {known})")
        if found.id in out:
            raise client_mistake(f"field: {found.name!r} is given twice")
        text = value.strip()
        if found.type is v1.CustomFieldType.ENUM_MULTI:
            values = [part.strip() for part in text.split(",") if part.strip()]
        else:
            values = [text] if text else []
        out[found.id] = v1.CustomFieldValue(field_id=found.id, values=values)
    return list(out.values())
