"""Redmine's relations, as an issue's JSON and its journals hold them.

An issue's ``parent`` and its ``relations`` (``include=relations``, listed on
both issues; Redmine stores each one way, ``issue_id`` to ``issue_to_id``),
and a journal's ``relation`` details and ``parent_id`` changes, as the
importer contract's relations and relation changes.
"""

from __future__ import annotations

from typing import Any

from bugless_core.importer import SourceRelation, SourceRelationChange

#: Redmine relation type -> (the relation as SourceRelation names it, whether
#: it runs from ``issue_to_id`` to ``issue_id``). Redmine stores the reverse
#: types turned round, but an export may name them.
_RELATIONS = {
    "duplicates": ("duplicate_of", False),
    "duplicated": ("duplicate_of", True),
    "blocks": ("blocks", False),
    "blocked": ("blocks", True),
    "precedes": ("precedes", False),
    "follows": ("precedes", True),
    "copied_to": ("copied_to", False),
    "copied_from": ("copied_to", True),
}
#: A journal's ``relation`` detail (its name the relation as this issue sees
#: it, its value the other issue's id) -> the relation change it is (kind,
#: reverse). Redmine journals a relation on both issues; the blocked issue's
#: and the duplicate's details are read, and the Model writes the blocking
#: issue's side (the blocker's ``blocks`` detail would repeat it); a
#: ``duplicated`` is the duplicate's to hold. ``relates``, ``precedes`` and
#: ``copied_to`` have no bugless counterpart.
_RELATION_DETAILS = {"blocked": ("blocks", True), "duplicates": ("duplicate_of", False)}


def relation_changes(detail: dict[str, Any]) -> list[SourceRelationChange]:
    """A journal detail's relation changes: a relation added or removed, the parent changed.

    Redmine journals a relation as ``{"property": "relation", "name":
    "blocked", "new_value": "7"}`` (``old_value`` when it was removed) and a
    new parent as the attribute ``parent_id``, on the sub-issue only.
    """
    property_, name = detail.get("property"), str(detail.get("name") or "")
    if property_ == "relation" and name in _RELATION_DETAILS:
        kind, reverse = _RELATION_DETAILS[name]
    elif property_ == "attr" and name == "parent_id":
        kind, reverse = "parent", False
    else:
        return []
    found: list[SourceRelationChange] = []
    for side, removed in (("old_value", True), ("new_value", False)):
        other = str(detail.get(side) or "").strip()
        if other.isdigit():
            found.append(SourceRelationChange(kind, other, reverse, removed=removed))
    return found


def issue_relations(item: dict[str, Any]) -> tuple[SourceRelation, ...]:
    """The issue's parent and its relations, as seen from the issue."""
    own = str(item["id"])
    found: list[SourceRelation] = []
    parent = (item.get("parent") or {}).get("id")
    if parent is not None:
        found.append(SourceRelation("parent", str(parent)))
    for relation in item.get("relations") or []:
        name = str(relation.get("relation_type") or "")
        kind, turned = _RELATIONS.get(name, (name, False))
        source, target = str(relation["issue_id"]), str(relation["issue_to_id"])
        if turned:
            source, target = target, source
        if source == own:
            found.append(SourceRelation(kind, target))
        elif target == own:
            found.append(SourceRelation(kind, source, reverse=True))
    return tuple(found)
