"""The vocabulary of the search language: fields, aliases, operators, sort keys.

Everything the parser, the printer and the structured-query translation need to
agree on lives here once, so that adding a field (or a status to the proto) is a
one-line change that all three pick up. Status and issue-type names are derived
from the ``bugless.v1`` enums rather than copied, so a new status is searchable
as soon as the proto has it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum, StrEnum

from bugless_core import ids
from bugless_proto import v1


class Field(StrEnum):
    """A searchable field that takes typed values (everything but free text).

    The value is the canonical name the printer writes (``componentid``), except
    for :attr:`STATUS_CLASS`, which has no name of its own in the language: it is
    written ``is:open`` / ``is:closed``.
    """

    STATUS = "status"
    STATUS_CLASS = "status_class"
    ASSIGNEE = "assignee"
    REPORTER = "reporter"
    CC = "cc"
    VERIFIER = "verifier"
    PRIORITY = "priority"
    SEVERITY = "severity"
    TYPE = "type"
    COMPONENT = "componentid"
    #: A component by its name (``component:Rocket``) or its path from the
    #: top (``component:"Rocket>Engine"``), in any case; ``+`` adds the
    #: components below, as ``componentid:12+`` does.
    COMPONENT_NAME = "component"
    HOTLIST = "hotlistid"
    ID = "id"
    BLOCKING = "blockingid"
    BLOCKED_BY = "blockedbyid"
    PARENT = "parentid"
    CANONICAL = "canonicalid"
    CREATED = "created"
    MODIFIED = "modified"
    CLOSED = "closed"
    COMMENTER = "commenter"
    MODIFIER = "modifier"
    LAST_MODIFIER = "lastmodifier"
    LAST_COMMENTER = "lastcommenter"
    #: The issue's attachments, by a part of their name (``attachment:crash``,
    #: ``has:attachment``).
    ATTACHMENT = "attachment"
    STARRED_BY = "star"
    #: How many starred the issue: Google Issue Tracker's ``votecount`` (its
    #: +1s are bugless' stars).
    STAR_COUNT = "votecount"
    #: Someone ``@mentioned`` in the title, description or a comment
    #: (:mod:`bugless_core.mentions`).
    MENTION = "mention"


class TextField(StrEnum):
    """Where a word or phrase is looked for: everywhere, the title, or comments."""

    TEXT = "text"
    TITLE = "title"
    COMMENT = "comment"
    #: An imported issue's external reference, matched exactly
    #: (``externalid:"github:org/repo#56"``).
    EXTERNAL_ID = "externalid"


class Operator(StrEnum):
    """How a field term compares; ANY and NONE take no values."""

    EQ = "eq"
    LT = "lt"
    LE = "le"
    GT = "gt"
    GE = "ge"
    ANY = "any"
    NONE = "none"


class SortField(StrEnum):
    """What results can be ordered by (``sort:priority,-modified``)."""

    ID = "id"
    CREATED = "created"
    MODIFIED = "modified"
    PRIORITY = "priority"
    SEVERITY = "severity"
    STATUS = "status"
    TITLE = "title"
    STARS = "stars"
    #: A custom field (:attr:`SortSpec.custom_field_id`), written ``customfield<ID>``.
    CUSTOM = "customfield"


class ValueKind(Enum):
    """The type of value a :class:`Field` takes."""

    USER = "user"
    LEVEL = "level"
    ENUM = "enum"
    INTEGER = "integer"
    DATE = "date"
    #: A piece of text, matched as a part of a name.
    TEXT = "text"
    #: A name, matched whole in any case.
    NAME = "name"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """What the language allows for one field.

    Attributes:
        kind: The type of its values.
        ordered: Whether ``<``, ``<=``, ``>``, ``>=`` make sense for it.
        nullable: Whether an issue can lack a value, so that ``none``, ``any``
            and ``has:`` make sense for it.
        level_prefix: For LEVEL fields, the letter written before the number
            (``p`` for P0..P4, ``s`` for S0..S4).
        choices: For ENUM fields, the accepted lower-case names.
    """

    kind: ValueKind
    ordered: bool = False
    nullable: bool = False
    level_prefix: str = ""
    choices: tuple[str, ...] = ()


#: Status and issue-type members by the lower-case names the language writes.
ENUM_MEMBERS: dict[Field, dict[str, v1.Status | v1.IssueType]] = {
    Field.STATUS: {s.name.lower(): s for s in v1.Status if s.value != 0},
    Field.TYPE: {t.name.lower(): t for t in v1.IssueType if t.value != 0},
}
STATUS_NAMES: tuple[str, ...] = tuple(ENUM_MEMBERS[Field.STATUS])
ISSUE_TYPE_NAMES: tuple[str, ...] = tuple(ENUM_MEMBERS[Field.TYPE])
STATUS_CLASS_NAMES: tuple[str, ...] = ("open", "closed")
#: ``is:starred``: the same as ``star:me`` (Monorail, Google Issue Tracker).
IS_STARRED = "starred"

#: The highest priority/severity number (P4, S4).
MAX_LEVEL = 4
#: Values of integer fields are ids (the range is stated once, in bugless_core.ids).
MAX_INTEGER = ids.MAX_ID

FIELD_SPECS: dict[Field, FieldSpec] = {
    Field.STATUS: FieldSpec(ValueKind.ENUM, choices=STATUS_NAMES),
    Field.STATUS_CLASS: FieldSpec(ValueKind.ENUM, choices=STATUS_CLASS_NAMES),
    Field.ASSIGNEE: FieldSpec(ValueKind.USER, nullable=True),
    Field.REPORTER: FieldSpec(ValueKind.USER, nullable=True),
    Field.CC: FieldSpec(ValueKind.USER, nullable=True),
    Field.VERIFIER: FieldSpec(ValueKind.USER, nullable=True),
    Field.PRIORITY: FieldSpec(ValueKind.LEVEL, ordered=True, level_prefix="p"),
    Field.SEVERITY: FieldSpec(ValueKind.LEVEL, ordered=True, level_prefix="s"),
    Field.TYPE: FieldSpec(ValueKind.ENUM, choices=ISSUE_TYPE_NAMES),
    Field.COMPONENT: FieldSpec(ValueKind.INTEGER),
    Field.COMPONENT_NAME: FieldSpec(ValueKind.NAME),
    Field.HOTLIST: FieldSpec(ValueKind.INTEGER, nullable=True),
    Field.ID: FieldSpec(ValueKind.INTEGER, ordered=True),
    Field.BLOCKING: FieldSpec(ValueKind.INTEGER, ordered=True, nullable=True),
    Field.BLOCKED_BY: FieldSpec(ValueKind.INTEGER, ordered=True, nullable=True),
    Field.PARENT: FieldSpec(ValueKind.INTEGER, ordered=True, nullable=True),
    Field.CANONICAL: FieldSpec(ValueKind.INTEGER, ordered=True, nullable=True),
    Field.CREATED: FieldSpec(ValueKind.DATE, ordered=True),
    Field.MODIFIED: FieldSpec(ValueKind.DATE, ordered=True),
    Field.CLOSED: FieldSpec(ValueKind.DATE, ordered=True, nullable=True),
    Field.COMMENTER: FieldSpec(ValueKind.USER, nullable=True),
    Field.MODIFIER: FieldSpec(ValueKind.USER),
    Field.LAST_MODIFIER: FieldSpec(ValueKind.USER),
    Field.LAST_COMMENTER: FieldSpec(ValueKind.USER),
    Field.ATTACHMENT: FieldSpec(ValueKind.TEXT, nullable=True),
    Field.STARRED_BY: FieldSpec(ValueKind.USER, nullable=True),
    Field.STAR_COUNT: FieldSpec(ValueKind.INTEGER, ordered=True),
    Field.MENTION: FieldSpec(ValueKind.USER),
}

#: Every name (canonical or alias, lower case) a query may put before ``:``.
#: ``is`` maps to STATUS; the parser turns ``is:open`` into STATUS_CLASS and
#: ``is:starred`` into ``star:me``.
FIELD_NAMES: dict[str, Field | TextField] = {
    "status": Field.STATUS,
    "is": Field.STATUS,
    "assignee": Field.ASSIGNEE,
    "a": Field.ASSIGNEE,
    "reporter": Field.REPORTER,
    "r": Field.REPORTER,
    "cc": Field.CC,
    "verifier": Field.VERIFIER,
    "v": Field.VERIFIER,
    "priority": Field.PRIORITY,
    "p": Field.PRIORITY,
    "severity": Field.SEVERITY,
    "s": Field.SEVERITY,
    "type": Field.TYPE,
    "t": Field.TYPE,
    "componentid": Field.COMPONENT,
    "c": Field.COMPONENT,
    "component": Field.COMPONENT_NAME,
    "hotlistid": Field.HOTLIST,
    "h": Field.HOTLIST,
    "id": Field.ID,
    "blockingid": Field.BLOCKING,
    "blockedbyid": Field.BLOCKED_BY,
    "parentid": Field.PARENT,
    "canonicalid": Field.CANONICAL,
    "created": Field.CREATED,
    "modified": Field.MODIFIED,
    "closed": Field.CLOSED,
    "resolved": Field.CLOSED,
    "commenter": Field.COMMENTER,
    "modifier": Field.MODIFIER,
    "lastmodifier": Field.LAST_MODIFIER,
    "lastcommenter": Field.LAST_COMMENTER,
    "attachment": Field.ATTACHMENT,
    "star": Field.STARRED_BY,
    "starredby": Field.STARRED_BY,
    "votecount": Field.STAR_COUNT,
    "mention": Field.MENTION,
    "title": TextField.TITLE,
    "comment": TextField.COMMENT,
    "externalid": TextField.EXTERNAL_ID,
}

#: Names that look like fields but are instructions to the parser.
HAS = "has"
SORT = "sort"

#: Google Issue Tracker's built-in version fields; bugless keeps versions in
#: custom fields, so each name searches the custom fields of that name.
CUSTOM_FIELD_ALIASES: dict[str, str] = {
    "foundin": "Found In",
    "inprod": "In Prod",
    "targetedto": "Targeted To",
    "verifiedin": "Verified In",
}
#: ``customfield<ID>``: a custom field by id.
CUSTOM_FIELD_PREFIX = "customfield"

SORT_NAMES: dict[str, SortField] = {
    **{f.value: f for f in SortField if f is not SortField.CUSTOM},
    "p": SortField.PRIORITY,
    "s": SortField.SEVERITY,
}

#: The fields whose values a trailing ``+`` marks as subtrees (``c:12+``).
SUBTREE_FIELDS: frozenset[Field] = frozenset({Field.COMPONENT, Field.COMPONENT_NAME, Field.PARENT})

#: The operators as written in a query; ``=`` is accepted as a synonym of ``:``.
OPERATOR_SYMBOLS: dict[str, Operator] = {
    ":": Operator.EQ,
    "=": Operator.EQ,
    "<": Operator.LT,
    "<=": Operator.LE,
    ">": Operator.GT,
    ">=": Operator.GE,
}
COMPARISONS: frozenset[Operator] = frozenset({Operator.LT, Operator.LE, Operator.GT, Operator.GE})


def query_name(field: Field | TextField) -> str:
    """The name the printer writes for ``field`` (``is`` for STATUS_CLASS)."""
    return "is" if field is Field.STATUS_CLASS else field.value


def ordered_field_names() -> list[str]:
    """Canonical names of the fields that accept comparisons, for error messages."""
    return [query_name(f) for f, spec in FIELD_SPECS.items() if spec.ordered]


def nullable_field_names() -> list[str]:
    """Canonical names of the fields ``none``/``any``/``has:`` apply to."""
    return [query_name(f) for f, spec in FIELD_SPECS.items() if spec.nullable]


def suggest(word: str, candidates: Iterable[str]) -> str:
    """A "did you mean" clause for ``word``, or "" when nothing is close.

    Used for unknown fields, sort keys and enum values so that every such error
    offers the likely fix. Words compare case-folded; a candidate is offered
    as given (``'Rocket'`` for ``rockt``).
    """
    by_key: dict[str, str] = {}
    for candidate in candidates:
        by_key.setdefault(candidate.casefold(), candidate)
    matches = difflib.get_close_matches(word.casefold(), list(by_key), n=3, cutoff=0.6)
    if not matches:
        return ""
    return f"; did you mean {join_alternatives(by_key[m] for m in matches)}?"


def join_alternatives(names: Iterable[str], conjunction: str = "or") -> str:
    """``'a'``, ``'a' or 'b'``, ``'a', 'b' or 'c'``: quoted, for messages."""
    quoted = [f"'{n}'" for n in names]
    if len(quoted) <= 1:
        return "".join(quoted)
    return f"{', '.join(quoted[:-1])} {conjunction} {quoted[-1]}"
