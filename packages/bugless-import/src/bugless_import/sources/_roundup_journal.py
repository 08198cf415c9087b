"""Roundup's journal walked back into history entries, and the REST value shapes it reads.

Roundup's journal stores each change's *previous* value (multilinks as the
ids added and removed); :class:`~bugless_import.sources.roundup.RoundupImporter`
walks an issue's journal back from its current values, and
:func:`undo_record` turns one ``set`` record into the entry that names old
and new for every change, its added messages as the comment and its
relation properties' changes as relation changes. Kept apart from the
importer's reading of the tracker (sign-in, REST collections, users, files):
this part only turns what was read into entries.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from bugless_core.importer import SourceChange, SourceEntry, SourceRelationChange

#: Issue links the journal names by id: property -> the class the id is of.
LINKS = {"status": "status", "priority": "priority", "assignedto": "user"}
#: Issue multilinks the journal records as ids added and removed: property -> class.
MULTILINKS = {"nosy": "user", "keyword": "keyword", "messages": "msg"}
#: Issue multilinks to the issues that block the issue (where the schema has them).
BLOCKED_BY = ("blockers", "dependencies")
#: Issue multilinks that are relations: property -> (kind, reverse), as
#: :class:`SourceRelation` reads them.
RELATION_PROPERTIES = {
    "superseder": ("duplicate_of", False),
    **{name: ("blocks", True) for name in BLOCKED_BY},
}


def multilink_ids(value: Any) -> list[str]:
    """A multilink's ids (REST's ``[{"id": ...}]`` or a plain list); a link's one id, or none.

    A link: a tracker's ``superseder`` or ``dependencies`` declared ``Link``.
    """
    if value is None or isinstance(value, (dict, str)):
        return [found] if (found := link_id(value)) else []
    return [str(v["id"] if isinstance(v, dict) else v) for v in value]


def journal_relations(field: str, before: Any, current: dict[str, Any]) -> list[tuple[str, bool]]:
    """A journal record's change of relation property ``field``: (issue id, removed) pairs.

    A multilink's record lists what it added and removed (``[["+", ["12"]]]``);
    a link's keeps only the value before, the one after being where the
    roll-back of the journal stands (``current``), which it then moves back.
    """
    if isinstance(before, list):
        return [(i, op == "-") for op, ids in before for i in sorted(map(str, ids), key=int)]
    old, new = link_id(before), current.get(field, "")
    current[field] = old
    if old == new:
        return []
    return [*([(old, True)] if old else []), *([(new, False)] if new else [])]


def link_id(value: Any) -> str:
    """A link's id (REST's ``{"id": ...}`` or the id itself); "" for none."""
    if isinstance(value, dict):
        return str(value["id"])
    return "" if value is None else str(value)


def roundup_date(text: str) -> datetime:
    """REST's ``2024-03-01.12:30:05`` (UTC) or the history's ISO form."""
    if "T" in text:
        return datetime.fromisoformat(text)
    return datetime.strptime(text, "%Y-%m-%d.%H:%M:%S").replace(tzinfo=UTC)


def link_value(field: str, raw: Any, names: Callable[[str], Mapping[str, str]]) -> str:
    """The name a link property's id stands for (``title`` as it is); "" for none."""
    if field == "title":
        return "" if raw is None else str(raw)
    return names(LINKS[field]).get(link_id(raw), "") if link_id(raw) else ""


def undo_record(
    record: dict[str, Any],
    current: dict[str, Any],
    sets: dict[str, set[str]],
    messages: dict[str, dict[str, Any]],
    users: Mapping[str, str],
    *,
    tracker: str,
    names: Callable[[str], Mapping[str, str]],
) -> SourceEntry | None:
    """One ``set`` journal record as an entry; rolls ``current`` and ``sets`` back past it.

    Args:
        record: The journal record (``action`` ``set``, its ``params``
            holding each changed property's value before).
        current: The issue's link and title values as they stand after
            the record; set to those before it.
        sets: The issue's multilinks (ids) as they stand after the
            record; set to those before it.
        messages: The issue's messages by id (an entry's comment is
            what the record added).
        users: User id -> username.
        tracker: The tracker's name in external ids (``roundup:NAME#12``).
        names: Class (``status``, ``keyword``, ...) -> id -> name.
    """
    params: dict[str, Any] = record.get("params") or {}
    changes: list[SourceChange] = []
    relations: list[SourceRelationChange] = []
    comment: list[str] = []
    for field, before in sorted(params.items()):
        if field in RELATION_PROPERTIES:
            kind, reverse = RELATION_PROPERTIES[field]
            relations += [
                SourceRelationChange(kind, f"{tracker}#{i}", reverse=reverse, removed=removed)
                for i, removed in journal_relations(field, before, current)
            ]
        elif field in MULTILINKS:
            added = {i for op, ids in before if op == "+" for i in map(str, ids)}
            removed = {i for op, ids in before if op == "-" for i in map(str, ids)}
            sets[field] = (sets[field] - added) | removed
            if field == "messages":
                comment += [
                    str(messages[m].get("content") or "")
                    for m in sorted(added, key=int)
                    if m in messages
                ]
            elif field == "nosy":
                changes.append(
                    SourceChange(
                        "cc",
                        added=tuple(sorted(users.get(u, u) for u in added)),
                        removed=tuple(sorted(users.get(u, u) for u in removed)),
                    )
                )
            else:
                keywords = names("keyword")
                changes.append(
                    SourceChange(
                        "labels",
                        added=tuple(sorted(keywords.get(k, k) for k in added)),
                        removed=tuple(sorted(keywords.get(k, k) for k in removed)),
                    )
                )
        elif field in LINKS or field == "title":
            old = "" if before is None else str(before)
            new = current[field]
            current[field] = old
            target = {"assignedto": "assignee"}.get(field, field)
            value_old, value_new = link_value(field, old, names), link_value(field, new, names)
            if field in {"status", "priority"}:
                value_old, value_new = value_old.lower(), value_new.lower()
            if value_old != value_new:
                changes.append(SourceChange(target, old=value_old, new=value_new))
    text = "\n\n".join(comment)
    if not changes and not relations and not text.strip():
        return None
    return SourceEntry(
        author=users.get(str(record["user"]), ""),
        at=roundup_date(record["date"]),
        comment=text,
        changes=tuple(changes),
        relations=tuple(relations),
    )
