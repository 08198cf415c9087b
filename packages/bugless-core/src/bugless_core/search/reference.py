"""The search language's reference, built from the vocabulary the parser reads.

The web UI's query help page shows it (the README's table is for readers of
the repository, and a person working in the browser never sees it). Names,
aliases, operators, enum values and sort keys come from
:mod:`bugless_core.search._fields`, the tables the parser itself consults, so
a field or status added there shows here without another edit; what each
example means is left to :func:`~bugless_core.search.explain` when the page
is shown. Only the examples and a few words on what a field holds are
written here, and a test parses every example and checks that every field
has one.
"""

from __future__ import annotations

from dataclasses import dataclass

from bugless_core.search._fields import (
    COMPARISONS,
    CUSTOM_FIELD_ALIASES,
    CUSTOM_FIELD_PREFIX,
    FIELD_NAMES,
    FIELD_SPECS,
    HAS,
    IS_STARRED,
    MAX_LEVEL,
    OPERATOR_SYMBOLS,
    SORT_NAMES,
    STATUS_CLASS_NAMES,
    Field,
    SortField,
    TextField,
    ValueKind,
    query_name,
)
from bugless_core.search._values import DATE_FORMS


@dataclass(frozen=True, slots=True)
class FieldHelp:
    """One field of the language as the help page lists it.

    Attributes:
        names: The canonical name first, then its aliases.
        values: What it takes, in words.
        operators: What may follow the name (``:`` always).
        examples: Queries using it; :func:`~bugless_core.search.explain`
            says what each means.
    """

    names: tuple[str, ...]
    values: str
    operators: tuple[str, ...]
    examples: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SyntaxHelp:
    """A rule of the language's grammar, with a query that shows it."""

    rule: str
    example: str


#: Queries per field (STATUS_CLASS is written ``is:open`` and shown under status).
_EXAMPLES: dict[Field | TextField, tuple[str, ...]] = {
    Field.STATUS: ("status:new,assigned", "is:open", "is:closed"),
    Field.ASSIGNEE: ("assignee:me", "a:none"),
    Field.REPORTER: ("reporter:me",),
    Field.CC: ("cc:me",),
    Field.VERIFIER: ("verifier:any",),
    Field.PRIORITY: ("p:p0,p1", "p<p2"),
    Field.SEVERITY: ("s>=s2",),
    Field.TYPE: ("type:feature_request",),
    Field.COMPONENT: ("componentid:12", "c:12+"),
    Field.COMPONENT_NAME: ("component:Rocket", 'component:"Rocket>Engine"+'),
    Field.HOTLIST: ("hotlistid:7", "h:none"),
    Field.ID: ("id>1000",),
    Field.BLOCKING: ("blockingid:42",),
    Field.BLOCKED_BY: ("blockedbyid:any",),
    Field.PARENT: ("parentid:42", "parentid:42+"),
    Field.CANONICAL: ("canonicalid:none",),
    Field.CREATED: ("created>today-7", "created:2026-01-31"),
    Field.MODIFIED: ("modified:today",),
    Field.CLOSED: ("closed>=2026-01-01", "resolved:none"),
    Field.COMMENTER: ("commenter:me", "commenter:none"),
    Field.MODIFIER: ("modifier:me",),
    Field.LAST_MODIFIER: ("-lastmodifier:me",),
    Field.LAST_COMMENTER: ("lastcommenter:me",),
    Field.ATTACHMENT: ("attachment:log", "has:attachment"),
    Field.STARRED_BY: ("star:me", f"is:{IS_STARRED}", "star:none"),
    Field.STAR_COUNT: ("votecount>3",),
    Field.MENTION: ("mention:me",),
    TextField.TITLE: ("title:crash",),
    TextField.COMMENT: ('comment:"steps to reproduce"',),
    TextField.EXTERNAL_ID: ('externalid:"github:org/repo#56"',),
}

_USER_VALUES = "a username or me"
_NOTES: dict[Field | TextField, str] = {
    Field.STATUS: f"{{choices}}; is:{' / is:'.join(STATUS_CLASS_NAMES)} for either group",
    Field.COMPONENT: (
        "a component id; id+ adds the components below it (those you may view, "
        "even below one you may not); an id of no component you may view is an error"
    ),
    Field.COMPONENT_NAME: (
        "a component's name, or its path as you are shown it (Rocket>Engine; "
        "…>Engine below a component you may not view), in any case; "
        "name+ adds the components below it; a name no component you may view has is an error"
    ),
    Field.HOTLIST: "a hotlist id; an id of no hotlist you may see is an error",
    Field.ID: "an issue id",
    Field.BLOCKING: "the id of an issue this one blocks",
    Field.BLOCKED_BY: "the id of an issue blocking this one",
    Field.PARENT: "the parent issue's id; id+ adds every issue below it",
    Field.CANONICAL: "the id of the issue this one duplicates",
    Field.MODIFIER: f"{_USER_VALUES}: someone who changed the issue",
    Field.LAST_MODIFIER: f"{_USER_VALUES}: the last to change the issue",
    Field.COMMENTER: (
        f"{_USER_VALUES}: someone who commented; the description is the first comment, "
        "so the reporter who wrote one is a commenter"
    ),
    Field.LAST_COMMENTER: (
        f"{_USER_VALUES}: the last to comment (the description's writer, until someone comments)"
    ),
    Field.ATTACHMENT: "a part of an attachment's name, in any case",
    Field.STARRED_BY: f"{_USER_VALUES}; is:{IS_STARRED} is star:me",
    Field.STAR_COUNT: "how many people starred the issue",
    Field.MENTION: (
        f"{_USER_VALUES}, @-mentioned in the title, description, a comment or a file's description "
        "(an imported file not copied: its name, why and description)"
    ),
    TextField.TITLE: "words or a quoted phrase in the title",
    TextField.COMMENT: (
        "words or a quoted phrase in the description, a comment or a file's description "
        "(an imported file not copied: its name, why and description)"
    ),
    TextField.EXTERNAL_ID: "an imported issue's reference at its source, exactly",
}

#: The grammar, each rule with a query that shows it.
SYNTAX: tuple[SyntaxHelp, ...] = (
    SyntaxHelp("Words search the title, description and comments", "disk full"),
    SyntaxHelp('Quotes keep a phrase together (and make AND or OR a word: "AND")', '"disk full"'),
    SyntaxHelp("Terms side by side must all match", "is:open a:me"),
    SyntaxHelp("OR, in capitals, matches either side; it binds loosest", "p:p0 OR star:me"),
    SyntaxHelp("Parentheses group", "is:open (c:12+ OR h:7)"),
    SyntaxHelp("A leading - negates a term or a group", "-a:none -(p:p3 OR p:p4)"),
    SyntaxHelp("A comma list matches any of its values", "p:p0,p1"),
    SyntaxHelp(f"{HAS}:FIELD is FIELD:any", "has:verifier"),
    SyntaxHelp("me is the signed-in person", "a:me OR cc:me"),
    SyntaxHelp("Days count in your time zone; today-N is N days ago", "modified>today-7"),
    SyntaxHelp(
        "sort: orders the results, - for descending, several keys by commas",
        "is:open sort:priority,-modified",
    ),
)


def _values(field: Field | TextField) -> str:
    note = _NOTES.get(field, "")
    if isinstance(field, TextField):
        return note
    spec = FIELD_SPECS[field]
    match spec.kind:
        case ValueKind.USER:
            return note or _USER_VALUES
        case ValueKind.LEVEL:
            prefix = spec.level_prefix
            return f"{prefix}0 (the highest) to {prefix}{MAX_LEVEL}; the letter may be left out"
        case ValueKind.ENUM:
            return (note or "{choices}").format(choices=", ".join(spec.choices))
        case ValueKind.DATE:
            return DATE_FORMS
        case _:
            return note


def _operators(field: Field | TextField) -> tuple[str, ...]:
    symbols = [":"]
    if isinstance(field, Field):
        spec = FIELD_SPECS[field]
        if spec.ordered:
            symbols += [s for s, op in OPERATOR_SYMBOLS.items() if op in COMPARISONS]
        if spec.nullable:
            symbols += [":any", ":none", f"{HAS}:"]
    return tuple(symbols)


def _names(field: Field | TextField) -> tuple[str, ...]:
    canonical = query_name(field)
    aliases = [n for n, f in FIELD_NAMES.items() if f is field and n != canonical]
    return (canonical, *aliases)


def field_reference() -> tuple[FieldHelp, ...]:
    """Every field the parser knows, in the order the vocabulary lists them.

    Custom fields come last: by name in quotes, by ``customfield<ID>``, and
    the Google Issue Tracker version names that search custom fields.
    """
    listed: list[FieldHelp] = []
    for field in (*Field, *TextField):
        if field in (Field.STATUS_CLASS, TextField.TEXT):
            continue  # is:open under status; free words are in SYNTAX
        listed.append(FieldHelp(_names(field), _values(field), _operators(field), _EXAMPLES[field]))
    aliases = ", ".join(f"{alias} ({name!r})" for alias, name in CUSTOM_FIELD_ALIASES.items())
    listed.append(
        FieldHelp(
            names=('"Field Name"', f"{CUSTOM_FIELD_PREFIX}<ID>", *CUSTOM_FIELD_ALIASES),
            values=(
                "a custom field's value: an option, text it contains, a number or a day; "
                f"{aliases} search the custom fields of that name"
            ),
            operators=(
                ":",
                *(s for s, op in OPERATOR_SYMBOLS.items() if op in COMPARISONS),
                ":any",
                ":none",
                f"{HAS}:",
            ),
            examples=('"Found In":4.2', f"{CUSTOM_FIELD_PREFIX}12>5", f"{HAS}:foundin"),
        )
    )
    return tuple(listed)


def sort_keys() -> tuple[str, ...]:
    """What ``sort:`` takes: each key and its aliases (``priority (p)``), then custom fields."""
    keys = []
    for key in SortField:
        if key is SortField.CUSTOM:
            continue
        aliases = [n for n, k in SORT_NAMES.items() if k is key and n != key.value]
        keys.append(f"{key.value} ({', '.join(aliases)})" if aliases else key.value)
    return (*keys, f"{CUSTOM_FIELD_PREFIX}<ID>")


def example_queries() -> tuple[str, ...]:
    """Every example on the page, grammar's first (for the test that parses them all)."""
    return (
        *(s.example for s in SYNTAX),
        *(example for f in field_reference() for example in f.examples),
    )


__all__ = ["SYNTAX", "FieldHelp", "SyntaxHelp", "example_queries", "field_reference", "sort_keys"]
