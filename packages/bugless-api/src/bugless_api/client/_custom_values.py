"""Custom field values given by field name: ``Name=value`` text, or Python values."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence

from bugless_api.client._base import client_mistake
from bugless_core import custom_fields as cf
from bugless_core.errors import InvalidArgument
from bugless_proto import v1

T = v1.CustomFieldType

#: What :meth:`BuglessClient.create_issue` and ``update_issue`` take as one
#: field's value in ``fields``: text (any type), an int (integer fields), a
#: date (date fields), several texts (multi-choice fields); None or an empty
#: one clears the field.
FieldValue = str | int | datetime.date | Iterable[str] | None


def _field_lookup(
    fields: Sequence[v1.CustomField],
) -> tuple[dict[str, v1.CustomField], dict[str, v1.CustomField]]:
    by_name = {f.name.casefold(): f for f in fields}
    by_key = {cf.history_field(f.id): f for f in fields}
    return by_key, by_name


def _unknown(name: str, fields: Sequence[v1.CustomField], where: str) -> InvalidArgument:
    known = ", ".join(repr(f.name) for f in fields) or "none"
    return client_mistake(f"{where}: no custom field {name!r} applies here (known: {known})")


def field_specs(specs: Iterable[str]) -> dict[str, str]:
    """``Name=value`` texts (the CLI's ``--field``) as ``fields`` by name.

    Only the text is read here; which field a name means and whether the
    value fits it is :func:`named_values`' work (or :func:`custom_values`'),
    so a spec and a script's ``fields`` go through the same look-up.

    Raises:
        InvalidArgument: (a client mistake) a spec without ``=`` or a name,
            or one name given twice.
    """
    given: dict[str, str] = {}
    for spec in specs:
        name, equals, value = spec.partition("=")
        name = name.strip()
        if not equals or not name:
            raise client_mistake(f"field: {spec!r} is not Name=value")
        if name in given:
            raise client_mistake(f"fields[{name!r}]: custom field {name!r} is given twice")
        given[name] = value
    return given


def custom_values(
    fields: Sequence[v1.CustomField], specs: Iterable[str]
) -> list[v1.CustomFieldValue]:
    """The values ``specs`` set, each ``Name=value`` (or ``customfield<ID>=value``).

    The name is matched case-insensitively among ``fields`` (the fields that
    apply to the issue's component, from ``list_custom_fields``). An empty
    value clears the field; a multi-choice field takes a comma list
    (``OS=linux,mac``); a user field takes a username. The values are sent
    as typed: the Model checks them against the field's type (a script that
    wants them checked first gives ``fields`` to ``create_issue`` or
    ``update_issue``, as the CLI does).

    Raises:
        InvalidArgument: (a client mistake) a spec without ``=``, a name no
            field has, or a field named twice.
    """
    by_key, by_name = _field_lookup(fields)
    out: dict[int, v1.CustomFieldValue] = {}
    for name, value in field_specs(specs).items():
        found = by_key.get(name.casefold()) or by_name.get(name.casefold())
        if found is None:
            raise _unknown(name, fields, "field")
        if found.id in out:
            raise client_mistake(f"field: {found.name!r} is given twice")
        text = value.strip()
        if found.type is v1.CustomFieldType.ENUM_MULTI:
            values = [part.strip() for part in text.split(",") if part.strip()]
        else:
            values = [text] if text else []
        out[found.id] = v1.CustomFieldValue(field_id=found.id, values=values)
    return list(out.values())


def named_values(
    fields: Sequence[v1.CustomField], given: Mapping[str, FieldValue]
) -> list[v1.CustomFieldValue]:
    """``given`` (field name, or ``customfield<ID>``, to value) as values of ``fields``.

    Names match case-insensitively among the fields that apply to the
    issue's component. Each value is checked here by the Model's own rule
    (:func:`bugless_core.custom_fields.normalize_values`), so a script learns
    of an unknown option, a word for an integer field or two values for a
    single-valued one before anything is sent. A multi-choice field takes
    several texts, or one comma list (``"linux,mac"``: options hold no comma).

    Raises:
        InvalidArgument: (a client mistake, ``metadata["field"]`` names the
            entry) a name no field has, a field named twice, or a value that
            does not fit its field.
    """
    by_key, by_name = _field_lookup(fields)
    out: dict[int, v1.CustomFieldValue] = {}
    for name, value in given.items():
        where = f"fields[{name!r}]"
        found = by_key.get(name.strip().casefold()) or by_name.get(name.strip().casefold())
        if found is None:
            raise _unknown(name, fields, where)
        if found.id in out:
            raise client_mistake(f"{where}: custom field {found.name!r} is given twice")
        texts = _texts(found, value, where)
        try:
            values = cf.normalize_values(found, texts, where)
        except InvalidArgument as exc:
            raise InvalidArgument(
                exc.message, metadata={**exc.metadata, "origin": "client"}
            ) from None
        out[found.id] = v1.CustomFieldValue(field_id=found.id, values=values)
    return list(out.values())


def _texts(field: v1.CustomField, value: FieldValue, where: str) -> list[str]:
    """``value`` as the wire's texts, refusing a Python type the field cannot hold."""
    kind = cf.TYPE_NAMES.get(field.type, field.type.name)
    wrong = client_mistake(
        f"{where}: custom field {field.name!r} is {kind}; "
        f"{_accepted(field.type)}, not {type(value).__name__}"
    )
    if value is None:
        return []
    if isinstance(value, str):
        if field.type is T.ENUM_MULTI:
            return [part.strip() for part in value.split(",") if part.strip()]
        return [value] if value.strip() else []
    if isinstance(value, bool):
        raise wrong
    if isinstance(value, int):
        if field.type is not T.INTEGER:
            raise wrong
        return [str(value)]
    if isinstance(value, datetime.date):
        if field.type is not T.DATE or isinstance(value, datetime.datetime):
            raise wrong
        return [value.isoformat()]
    if field.type is not T.ENUM_MULTI:
        raise wrong
    texts = list(value)
    if not all(isinstance(text, str) for text in texts):
        raise wrong
    return texts


def _accepted(field_type: v1.CustomFieldType) -> str:
    return {
        T.INTEGER: "give an int (or its digits as a str)",
        T.DATE: "give a datetime.date (or a str YYYY-MM-DD)",
        T.ENUM_MULTI: "give a list of options (or one str, comma-separated)",
        T.USER: "give a username (a str)",
    }.get(field_type, "give a str")
