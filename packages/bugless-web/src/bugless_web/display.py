"""How wire values read on a page: enum labels, times, people, field names.

Kept in one module so every page says "Won't fix (obsolete)" and "P1" the same
way, and so the templates stay free of logic.
"""

from __future__ import annotations

import datetime
import functools
import urllib.parse
from collections.abc import Iterable, Mapping

from markupsafe import Markup, escape

from bugless_core.issue_fields import is_open

# The labels have one home in bugless_core (the notifier's mails say the same).
from bugless_core.issue_labels import (
    FIELD_LABELS,
    ISSUE_FIELDS,
    STATUS_LABELS,
    TYPE_LABELS,
    USER_FIELDS,
    holds_people,
    level_label,
    short_status,
    status_label,
    type_label,
)
from bugless_proto import v1

__all__ = [
    "ACL_ROLES",
    "FIELD_LABELS",
    "FORM_LABELS",
    "ISSUE_FIELDS",
    "PRIORITIES",
    "ROLE_LABELS",
    "SEVERITIES",
    "STATUS_LABELS",
    "TYPE_LABELS",
    "USER_FIELDS",
    "attachment_url",
    "component_options",
    "escape_text",
    "holds_people",
    "is_open",
    "iso_instant",
    "level_label",
    "level_pill",
    "short_status",
    "status_label",
    "status_pill",
    "timestamp",
    "type_label",
    "user_chip",
    "username_of",
]

PRIORITIES = [p for p in v1.Priority if p.value]
SEVERITIES = [s for s in v1.Severity if s.value]
ROLE_LABELS = {
    v1.Role.VIEWER: "Viewer",
    v1.Role.EDITOR: "Editor",
    v1.Role.ADMIN: "Admin",
    v1.Role.UNSPECIFIED: "—",
}
#: Roles an ACL form offers, by the name the form submits, lowest first.
ACL_ROLES = {"viewer": v1.Role.VIEWER, "editor": v1.Role.EDITOR, "admin": v1.Role.ADMIN}
#: Labels of form fields (the issue's fields plus the form-only ones).
FORM_LABELS = {
    **FIELD_LABELS,
    "description": "Description",
    "comment": "Comment",
    "hotlist_add": "Add to hotlist",
    "name": "Name",
    "query": "Query",
    "share_with_groups": "Share with groups",
}


def escape_text(value: object) -> str:
    """``value`` as HTML text with markupsafe's entities, without making a ``Markup``.

    For code that writes many values into one string (a result table, a
    picker of every component) and wraps the whole in one ``Markup``:
    autoescaping makes a ``Markup`` object per value, which on a 50-row list
    page was a fifth of the web tier's CPU.
    """
    return (
        str(value)
        .replace("&", "&amp;")
        .replace(">", "&gt;")
        .replace("<", "&lt;")
        .replace("'", "&#39;")
        .replace('"', "&#34;")
    )


@functools.lru_cache(maxsize=256, typed=True)
def status_pill(status: v1.Status) -> Markup:
    """A status as a pill, classed by the status and by open or closed (made once per status)."""
    openness = "open" if is_open(status) else "closed"
    return Markup(
        f'<span class="pill status-{escape_text(status.name.lower())} {openness}">'
        f"{escape_text(status_label(status))}</span>"
    )


@functools.lru_cache(maxsize=256, typed=True)
def level_pill(value: v1.Priority | v1.Severity) -> Markup:
    """A priority or severity as a pill (made once per value; ``typed``: P1 is not S1)."""
    return Markup(
        f'<span class="pill level level-{escape_text(value.name.lower())}">'
        f"{escape_text(level_label(value))}</span>"
    )


def component_options(components: Iterable[v1.Component], selected: int) -> Markup:
    """The ``<option>`` of each component (by path), ``selected`` marked.

    The pickers list the caller's whole tree (hundreds of components), on
    every issue page: written here in one pass rather than by a template loop,
    each unselected option kept by (id, path) (the same tree, page after page).
    """
    return Markup(
        "".join(
            _option(c.id, c.path)
            if c.id != selected
            else f'<option value="{c.id}" selected>{escape_text(c.path)}</option>'
            for c in components
        )
    )


@functools.lru_cache(maxsize=8192)
def _option(component_id: int, path: str) -> str:
    return f'<option value="{component_id}">{escape_text(path)}</option>'


def timestamp(value: datetime.datetime | None) -> Markup:
    """A ``<time>`` element in UTC, with the ISO form for machines and tooltips."""
    if value is None:
        return Markup("&mdash;")
    return _time_element(value)


def iso_instant(value: datetime.datetime) -> str:
    """The instant in UTC as a ``<time>`` element's ``datetime`` names it (``…Z``, to the second).

    One form for the page and for what its script redraws it with (a
    hotlist's rows answer), so ``app.js`` reads both alike.
    """
    return value.astimezone(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@functools.lru_cache(maxsize=4096)
def _time_element(value: datetime.datetime) -> Markup:
    """Kept per instant: list pages show the same issues' times page after page."""
    iso = iso_instant(value)
    shown = value.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    # Digits, dashes, colons and letters only: nothing to escape (and
    # Markup.format costs more than the rest; a list page has 50 of these).
    return Markup(f'<time datetime="{iso}" title="{iso}">{shown}</time>')


def user_chip(users: Mapping[str, v1.User], user_id: str) -> Markup:
    """A link to a person's page showing their display name; a dash for nobody.

    ``users`` is the batch the page fetched from the Authenticator for this
    render; an id missing from it (a deleted account) is shown as such rather
    than leaking the opaque id.
    """
    if not user_id:
        return _NOBODY
    user = users.get(user_id)
    if user is None:
        return _UNKNOWN_USER
    return _chip(user.username, user.display_name, user.disabled)


#: A character reference, not the character: one character beyond ASCII keeps
#: a whole page's string at two bytes a character, and its UTF-8 encoding slow
#: (tests/test_lists.py, test_a_list_of_ascii_issues_is_an_ascii_page).
_NOBODY = Markup('<span class="muted">&mdash;</span>')
_UNKNOWN_USER = Markup('<span class="chip chip-unknown" title="unknown user">unknown user</span>')


@functools.lru_cache(maxsize=4096)
def _chip(username: str, display_name: str, disabled: bool) -> Markup:
    """Kept per person as shown: the same people fill page after page (three escapes each)."""
    name = display_name or username
    escaped = escape(username)
    suffix = " (disabled)" if disabled else ""
    return Markup(
        f'<a class="chip" href="/users/{escaped}" title="{escaped}{suffix}">'
        f'<span class="avatar">{escape((name[:1] or "?").upper())}</span>{escape(name)}</a>'
    )


def username_of(users: Mapping[str, v1.User], user_id: str) -> str:
    """The username for an id (for pre-filling edit forms); empty for nobody."""
    user = users.get(user_id)
    return user.username if user is not None else ""


def attachment_url(attachment: v1.Attachment) -> str:
    """Where an attachment is downloaded from (its name last, so browsers save it so)."""
    return f"/attachments/{attachment.id}/{urllib.parse.quote(attachment.name, safe='')}"
