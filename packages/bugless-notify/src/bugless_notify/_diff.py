"""One changed field of a notification, and how each form shows it.

The renderer (:mod:`bugless_notify.render`) turns each field change it may
show into a :class:`Line` of :class:`Value` s; these helpers show a line as
plain text (mail and chat), HTML and the webhook JSON. Kept apart from the
renderer to keep each module short; they look nothing up either.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

#: What marks a removed list value, as on the web timeline.
_MINUS = "\u2212"


@dataclass(frozen=True)
class Value:
    """One value of a change, as text and, where it names something, with a link."""

    text: str
    url: str = ""
    #: The value's JSON form (a person object for people, else the text).
    json: Any = None


@dataclass(frozen=True)
class Line:
    """One changed field: old -> new for scalars, added/removed for lists."""

    field: str
    label: str
    old: Value | None = None
    new: Value | None = None
    added: tuple[Value, ...] = ()
    removed: tuple[Value, ...] = ()


def text_diff(line: Line, *, created: bool) -> str:
    """``line`` as plain text: ``New → Fixed``, or added and removed values for a list."""
    if line.added or line.removed:
        return ", ".join(
            [*(f"+ {v.text}" for v in line.added), *(f"{_MINUS} {v.text}" for v in line.removed)]
        )
    old = line.old.text if line.old else "none"
    new = line.new.text if line.new else "none"
    return new if created else f"{old} → {new}"


def html_value(value: Value) -> str:
    """``value`` escaped, as a link where it names something."""
    text = html.escape(value.text)
    return f'<a href="{html.escape(value.url)}">{text}</a>' if value.url else text


def html_diff(line: Line, *, created: bool) -> str:
    """``line`` as HTML, removed values struck through in red and added ones in green."""
    if line.added or line.removed:
        added = [f'<ins style="color:#1a7f37">+ {html_value(v)}</ins>' for v in line.added]
        removed = [
            f'<del style="color:#cf222e">{_MINUS} {html_value(v)}</del>' for v in line.removed
        ]
        return " ".join(added + removed)
    new = html_value(line.new) if line.new else "none"
    if created:
        return new
    old = html_value(line.old) if line.old else "none"
    return f'<del style="color:#cf222e">{old}</del> → <ins style="color:#1a7f37">{new}</ins>'


def json_line(line: Line) -> dict[str, Any]:
    """``line`` in the webhook JSON form: old/new, or added/removed for a list."""
    if line.added or line.removed:
        return {
            "field": line.field,
            "label": line.label,
            "added": [v.json for v in line.added],
            "removed": [v.json for v in line.removed],
        }
    return {
        "field": line.field,
        "label": line.label,
        "old": line.old.json if line.old else None,
        "new": line.new.json if line.new else None,
    }
