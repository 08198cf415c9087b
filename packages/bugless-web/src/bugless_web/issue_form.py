"""The issue edit form: what it shows, what it submits, and the delta it means.

One submission edits fields and adds a comment as one ``ChangeIssue`` (one
history entry). The form carries the version it was rendered from; the delta
is computed against the issue *at that version*, and the Model refuses it if
the issue moved on, so a stale form is never applied over someone else's
change: the page shows what changed meanwhile and offers the same values
again against the new version.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bugless_core.enums import enum_by_name
from bugless_core.errors import InvalidArgument
from bugless_core.issue_fields import SCALAR_FIELDS
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask
from bugless_web import custom_fields
from bugless_web.form_errors import FieldErrors, message_without_path
from bugless_web.frontend import form_ids, form_int

_T = TypeVar("_T")
_E = TypeVar("_E", bound=enum.Enum)

#: The edit form's fields in page order (the first invalid one gets the focus).
EDIT_FIELDS = (
    "title",
    "status",
    "priority",
    "severity",
    "type",
    "component_id",
    "assignee",
    "verifier",
    "cc",
    "parent_id",
    "duplicate_of_id",
    "blocking_ids",
    "blocked_by_ids",
    "hotlist_add",
    "comment",
)


@dataclass
class EditForm:
    """The values of an edit form, with people as usernames and ids as ints."""

    version: int
    title: str
    status: v1.Status
    priority: v1.Priority
    severity: v1.Severity
    type: v1.IssueType
    component_id: int
    assignee: str
    verifier: str
    parent_id: int
    duplicate_of_id: int
    cc: list[str] = field(default_factory=list)
    blocking_ids: list[int] = field(default_factory=list)
    blocked_by_ids: list[int] = field(default_factory=list)
    hotlist_add: int = 0
    hotlist_remove: list[int] = field(default_factory=list)
    comment: str = ""
    #: Custom field values by field id (usernames for user fields), for the
    #: fields the form shows.
    custom: custom_fields.CustomValues = field(default_factory=dict)
    #: The values the form was rendered with (its hidden ``orig_*`` fields):
    #: what the user *changed* is the difference, and only that is applied.
    original: EditForm | None = None

    @classmethod
    def from_issue(cls, issue: v1.Issue, users: Mapping[str, v1.User]) -> EditForm:
        """The form as the issue is now (people by username)."""

        def name(user_id: str) -> str:
            user = users.get(user_id)
            return user.username if user is not None else ""

        return cls(
            version=issue.version,
            title=issue.title,
            status=issue.status,
            priority=issue.priority,
            severity=issue.severity,
            type=issue.type,
            component_id=issue.component_id,
            assignee=name(issue.assignee),
            verifier=name(issue.verifier),
            parent_id=issue.parent_id,
            duplicate_of_id=issue.duplicate_of_id,
            cc=sorted(n for n in (name(u) for u in issue.cc) if n),
            blocking_ids=list(issue.blocking_ids),
            blocked_by_ids=list(issue.blocked_by_ids),
            custom=custom_fields.issue_values(issue, users),
        )

    @classmethod
    def from_form(cls, form: Any, prefix: str = "", errors: FieldErrors | None = None) -> EditForm:
        """Parse a submitted form; a malformed value names its field.

        The hidden ``orig_*`` fields become :attr:`original`. With ``errors``
        every malformed field is recorded there (and read as empty) instead of
        raising at the first, so the page can mark them all.

        Raises:
            InvalidArgument: A value is malformed and no ``errors`` was given.
        """

        def text(name: str) -> str:
            return str(form.get(prefix + name, "") or "")

        def read(name: str, reader: Callable[[str, str], _T], label: str) -> _T:
            value = text(name)
            try:
                return reader(value, label)
            except InvalidArgument as exc:
                if errors is None:
                    raise
                errors.add(name, message_without_path(exc.message), typed=value)
                return reader("", label)

        original = None
        if not prefix and form.get("orig_title") is not None:
            original = cls.from_form(form, prefix="orig_")
        hotlists: set[int] = set()
        for value in form.getall(prefix + "hotlist_remove", []):
            hotlist = read_int(str(value), "hotlist", errors, "hotlist_add")
            hotlists.add(hotlist)
        parsed = cls(
            version=form_int(text("version"), "version"),
            title=text("title").strip(),
            status=read("status", choice_reader(v1.Status), "status"),
            priority=read("priority", choice_reader(v1.Priority), "priority"),
            severity=read("severity", choice_reader(v1.Severity), "severity"),
            type=read("type", choice_reader(v1.IssueType), "type"),
            component_id=read("component_id", form_int, "component"),
            assignee=text("assignee").strip(),
            verifier=text("verifier").strip(),
            parent_id=read("parent_id", form_int, "parent"),
            duplicate_of_id=read("duplicate_of_id", form_int, "duplicate of"),
            cc=sorted({u for u in text("cc").replace(",", " ").split() if u}),
            blocking_ids=read("blocking_ids", form_ids, "blocking"),
            blocked_by_ids=read("blocked_by_ids", form_ids, "blocked by"),
            hotlist_add=read("hotlist_add", form_int, "hotlist"),
            hotlist_remove=sorted(hotlists - {0}),
            comment=text("comment"),
            custom=custom_fields.read_form(form, prefix),
        )
        parsed.original = original
        return parsed

    def rebased_on(self, current: EditForm) -> EditForm:
        """This edit moved onto a newer state of the issue.

        Scalar fields the user changed keep the user's value; the others take
        the current value (so someone else's change to them is kept). List
        fields merge like deltas: the user's additions and removals applied to
        the current list. Without :attr:`original` every field counts as
        changed (the form predates the hidden fields).
        """
        mine = self.original
        merged = EditForm(**{f: getattr(current, f) for f in _ALL_FIELDS})
        merged.version = current.version
        merged.comment = self.comment
        merged.hotlist_add = self.hotlist_add
        merged.hotlist_remove = self.hotlist_remove
        for name in SCALAR_FIELDS:
            if mine is None or getattr(self, name) != getattr(mine, name):
                setattr(merged, name, getattr(self, name))
        for name in ("cc", "blocking_ids", "blocked_by_ids"):
            ours, base, now = getattr(self, name), getattr(mine, name, None), getattr(current, name)
            if base is None:
                setattr(merged, name, list(ours))
                continue
            added, removed = set(ours) - set(base), set(base) - set(ours)
            setattr(merged, name, sorted((set(now) | added) - removed))
        merged.custom = dict(current.custom)
        for field_id, values in self.custom.items():
            if mine is None or values != mine.custom.get(field_id, ()):
                merged.custom[field_id] = values
        merged.original = EditForm(**{f: getattr(current, f) for f in _ALL_FIELDS})
        merged.original.custom = dict(current.custom)
        return merged

    def usernames(self) -> set[str]:
        """Every username the form names (to resolve in one batch)."""
        return {self.assignee, self.verifier, *self.cc} - {""}

    def check_people(self, people: Mapping[str, v1.User], errors: FieldErrors) -> None:
        """Record, field by field, the usernames that match nobody in ``people``."""
        for name in ("assignee", "verifier"):
            username = getattr(self, name)
            if username and username not in people:
                errors.add(name, f"no user named {username!r}")
        unknown = [n for n in self.cc if n not in people]
        if unknown:
            errors.add("cc", f"no user named {', '.join(map(repr, unknown))}")

    def delta_against(
        self, current: v1.Issue, people: Mapping[str, v1.User], users: Mapping[str, v1.User]
    ) -> v1.IssueDelta:
        """The delta that takes ``current`` to this form's values.

        Args:
            current: The issue at the form's version.
            people: Users by username, for the names the form gives.
            users: Users by id, for the issue's current people.

        Raises:
            InvalidArgument: A username matches nobody.
        """
        unknown = sorted(n for n in self.usernames() if n not in people)
        if unknown:
            msg = f"no user named {', '.join(map(repr, unknown))}"
            raise InvalidArgument(msg)

        def user_id(name: str) -> str:
            return people[name].user_id if name else ""

        wanted = v1.IssueFields(
            title=self.title,
            status=self.status or current.status,
            priority=self.priority or current.priority,
            severity=self.severity or current.severity,
            type=self.type or current.type,
            component_id=self.component_id or current.component_id,
            assignee=user_id(self.assignee),
            verifier=user_id(self.verifier),
            parent_id=self.parent_id,
            duplicate_of_id=self.duplicate_of_id,
        )
        paths = [f for f in SCALAR_FIELDS if getattr(wanted, f) != getattr(current, f)]
        cc_now = set(current.cc)
        cc_wanted = {user_id(n) for n in self.cc}
        # A cc whose account the Authenticator no longer knows has no username
        # in the form: keep it rather than silently dropping it.
        cc_wanted |= {u for u in cc_now if u not in users}
        return v1.IssueDelta(
            fields=wanted,
            update_mask=FieldMask(paths=paths),
            cc_add=sorted(cc_wanted - cc_now),
            cc_remove=sorted(cc_now - cc_wanted),
            blocking_add=sorted(set(self.blocking_ids) - set(current.blocking_ids)),
            blocking_remove=sorted(set(current.blocking_ids) - set(self.blocking_ids)),
            blocked_by_add=sorted(set(self.blocked_by_ids) - set(current.blocked_by_ids)),
            blocked_by_remove=sorted(set(current.blocked_by_ids) - set(self.blocked_by_ids)),
            hotlist_add=[self.hotlist_add]
            if self.hotlist_add and self.hotlist_add not in current.hotlist_ids
            else [],
            hotlist_remove=[h for h in self.hotlist_remove if h in current.hotlist_ids],
        )


_ALL_FIELDS = (
    "version",
    *SCALAR_FIELDS,
    "cc",
    "blocking_ids",
    "blocked_by_ids",
)


def delta_is_empty(delta: v1.IssueDelta) -> bool:
    """Whether a delta would change nothing."""
    mask = delta.update_mask.paths if delta.update_mask else []
    return not (
        mask
        or delta.cc_add
        or delta.cc_remove
        or delta.hotlist_add
        or delta.hotlist_remove
        or delta.blocking_add
        or delta.blocking_remove
        or delta.blocked_by_add
        or delta.blocked_by_remove
        or delta.custom_fields_set
    )


def read_int(value: str, label: str, errors: FieldErrors | None, name: str) -> int:
    """An integer form value; with ``errors``, a malformed one is recorded and read as 0."""
    try:
        return form_int(value, label)
    except InvalidArgument as exc:
        if errors is None:
            raise
        errors.add(name, message_without_path(exc.message), typed=value)
        return 0


def choice_reader(enum_type: type[_E]) -> Callable[[str, str], _E]:
    """A reader of a select of ``enum_type`` members: the named one, UNSPECIFIED for none chosen.

    The reader takes the submitted value and the field's label, and raises
    InvalidArgument for a name that is no member (only a hand-made request
    sends one).
    """
    unset = enum_type(0)
    return lambda value, label: enum_by_name(enum_type, value, label, blank=unset)
