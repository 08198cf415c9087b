"""Problems with a submitted form, each tied to the field it is about.

A form that comes back with problems shows each one next to its field (the
field marked ``aria-invalid`` and described by the message), lists them in a
summary at the top, and puts the focus on the first invalid field, so a person
at the top of a long page is taken to what needs fixing. The Model names the
field at fault at the start of its messages (``fields.parent_id: issue 9 not
found``, with ``metadata["field"]`` when it has one); :meth:`FieldErrors.take`
turns that path into the form field showing it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from markupsafe import Markup, escape

from bugless_core.errors import BuglessError

#: ``path: message`` (the path a dotted name, maybe with ``[n]`` indexes).
_LEADING_PATH = re.compile(r"^([a-z_][\w.\[\]]*): ")
_INDEX = re.compile(r"\[\d+\]")
#: Request paths whose last part is not itself a form field name.
REQUEST_FIELD_ALIASES: dict[str, str] = {
    "blocking_add": "blocking_ids",
    "blocking_remove": "blocking_ids",
    "blocked_by_add": "blocked_by_ids",
    "blocked_by_remove": "blocked_by_ids",
    "cc_add": "cc",
    "cc_remove": "cc",
    "hotlist_add": "hotlist_add",
    "hotlist_remove": "hotlist_add",
    "hotlist_ids": "hotlist_add",
    "parent": "parent_id",
    "component": "component_id",
}


@dataclass
class FieldErrors:
    """What is wrong with a submitted form, field by field.

    Attributes:
        fields: The form's field names in page order (the first invalid one
            gets the focus).
        messages: The problem with each invalid field.
        raw: What was typed into fields that could not be read (a number
            field holding words), shown again instead of the parsed value.
        general: Problems that belong to no single field.
        labels: Labels of fields the shared form labels do not know.
    """

    fields: Sequence[str]
    messages: dict[str, str] = field(default_factory=dict)
    raw: dict[str, str] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)
    #: Labels of fields the shared form labels do not know (custom fields).
    labels: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.messages or self.general)

    def add(self, name: str, message: str, *, typed: str | None = None) -> None:
        """Record ``message`` for field ``name`` (the first message per field wins)."""
        if name not in self.fields:
            self.general.append(message)
            return
        self.messages.setdefault(name, message)
        if typed is not None:
            self.raw.setdefault(name, typed)

    def take(self, error: BuglessError) -> bool:
        """Show ``error`` next to the field it names; False when it names none of ours."""
        name = field_of(error, self.fields)
        if name is None:
            return False
        self.add(name, message_without_path(error.message))
        return True

    @property
    def first(self) -> str:
        """The first invalid field in page order, or ``""``."""
        return next((name for name in self.fields if name in self.messages), "")

    @property
    def summary(self) -> list[tuple[str, str]]:
        """``(field, message)`` in page order, for the list at the top of the form."""
        return [(name, self.messages[name]) for name in self.fields if name in self.messages]

    def value(self, name: str, parsed: object) -> object:
        """What to show in field ``name``: what was typed when it could not be read."""
        return self.raw.get(name, parsed)


def input_name(field_id: int | str) -> str:
    """The form input of a custom field (``cf_12``)."""
    return f"cf_{field_id}"


def field_of(
    error: BuglessError,
    fields: Sequence[str],
    aliases: Mapping[str, str] = REQUEST_FIELD_ALIASES,
) -> str | None:
    """The form field a service error is about, if it names one of ``fields``.

    An error about one custom field (``metadata["custom_field_id"]``, as the
    Model's "is required" refusal of a create has, whose path is the whole
    ``custom_fields`` list) is about that field's input when the form has it.
    """
    custom = error.metadata.get("custom_field_id", "")
    if custom and input_name(custom) in fields:
        return input_name(custom)
    path = error.metadata.get("field", "")
    if not path:
        match = _LEADING_PATH.match(error.message)
        path = match.group(1) if match else ""
    if not path:
        return None
    last = _INDEX.sub("", path).rsplit(".", 1)[-1]
    name = aliases.get(last, last)
    return name if name in fields else None


def message_without_path(message: str) -> str:
    """``issue 9 not found`` from ``fields.parent_id: issue 9 not found`` (the field shows it)."""
    return _LEADING_PATH.sub("", message, count=1)


# The templates' field helpers, in Python: an edit form calls two per field
# (the issue page ~40), and as Jinja macros imported ``with context`` each
# page also rebuilt the macro module; together a tenth of the issue page's
# CPU in the web tier (bench/JOURNAL.md, "Web tier, #23 sixth pass").
#: No element ids given: a field's id is ``field-NAME``.
_NO_IDS: Mapping[str, str] = {}


def field_id(name: str, ids: Mapping[str, str] = _NO_IDS) -> Markup:
    """A field's element id: ``field-NAME`` (``comment`` for the comment), or what ``ids`` says."""
    return escape(ids.get(name) or ("comment" if name == "comment" else f"field-{name}"))


def field_attrs(errors: FieldErrors | None, name: str, ids: Mapping[str, str] = _NO_IDS) -> Markup:
    """A field's ``id`` and, when it has a problem, ``aria-invalid``, its description and the focus.

    Written right after the element's name (``<input name="x"{{ field_attrs(errors, "x") }}>``).
    """
    element = field_id(name, ids)
    if not errors or name not in errors.messages:
        return Markup(f' id="{element}"')
    focus = " autofocus" if errors.first == name else ""
    return Markup(f' id="{element}" aria-invalid="true" aria-describedby="{element}-error"{focus}')


def field_error(errors: FieldErrors | None, name: str, ids: Mapping[str, str] = _NO_IDS) -> Markup:
    """The problem with field ``name`` next to it (what ``aria-describedby`` names), or nothing."""
    if not errors or name not in errors.messages:
        return Markup("")
    return Markup(
        f'<span class="field-error" id="{field_id(name, ids)}-error">'
        f"{escape(errors.messages[name])}</span>"
    )
