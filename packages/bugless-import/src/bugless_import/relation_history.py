"""Relation history: the source's relation changes as the entries' own changes.

A source logs when a relation was added or removed (Trac's ticket_change rows
of MasterTicketsPlugin's and TracSubtickets' fields, Roundup's journal of
``superseder``, ``blockers`` and ``dependencies``, Jira's changelog of links,
"Epic Link" and "Parent", Redmine's journal of relations and ``parent_id``,
GitHub's timeline of parent and blocked-by events). Each becomes a relation change of its entry
(ImportedEntry ``parent``, ``duplicate_of``, ``blocking_add`` ...), naming the
other issue by its external id, which the Model resolves in the issue's
transaction and refuses when no issue has it.

So the other issue must exist first. The run imports in two passes: the
first sends every issue with its history cut before its first relation
change (:func:`cut`), so that after it every issue of the import exists; the
second sends the whole history of the issues it cut, one at a time, and the
Model appends the rest (an import appends only the entries beyond those it
has). A change naming an issue outside the import (nor imported by an earlier
run) is left out of the entry, and counted; the relation pass then reports
the relation as it does today. Which changes are left out depends on the
source and the state directory only, so a second run sends the same history.
"""

from __future__ import annotations

import copy
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bugless_core import limits
from bugless_core.errors import BuglessError
from bugless_core.importer import SourceRelationChange
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask

#: ImportedEntry list fields, by (kind, reverse) and whether the change removes.
_LISTS = {
    ("blocks", False, False): "blocking_add",
    ("blocks", False, True): "blocking_remove",
    ("blocks", True, False): "blocked_by_add",
    ("blocks", True, True): "blocked_by_remove",
}
#: ImportedEntry reference fields of the one-valued relations, with their mask path.
_ONE_VALUED = {
    "parent": ("parent", "parent_id"),
    "duplicate_of": ("duplicate_of", "duplicate_of_id"),
}
_RELATION_LISTS = ("blocking_add", "blocking_remove", "blocked_by_add", "blocked_by_remove")
_RELATION_PATHS = frozenset(path for _, path in _ONE_VALUED.values())
#: A field of an imported entry's relation change, as the Model names it when
#: it refuses one (its reference, a cycle it would close, a misplaced id).
_RELATION_FIELD = re.compile(
    r"history\[\d+\]\.(?:parent|duplicate_of|fields\.parent_id|fields\.duplicate_of_id"
    rf"|(?:{'|'.join(_RELATION_LISTS)})(?:\[\d+\])?)"
)


@dataclass
class RelationChanges:
    """Counts of the source's relation changes: kept in the history, or left out."""

    kept: int = 0
    left_out: int = 0
    #: Of ``kept``, those in issues whose relation history the Model refused.
    refused: int = 0


@dataclass
class HeldRelations:
    """The one-valued relations while an issue's history is converted (external ids)."""

    parent: str = ""
    duplicate_of: str = ""


def apply_relation_changes(
    item: v1.ImportedEntry,
    changes: Sequence[SourceRelationChange],
    reference: Callable[[str], str | None],
    held: HeldRelations,
    counts: RelationChanges | None = None,
) -> None:
    """Set ``item``'s relation changes from the source entry's ``changes``.

    ``reference`` gives a source key's external id, or None for an issue
    outside the import (the change is then left out). bugless holds one
    parent and one duplicate: an entry's removals apply first (a move from one
    parent to another is a removal and an addition), a removal of one not
    held changes nothing, and an addition while one is held is not imported
    (the relation pass reports the second, as it does for the source's
    relations now). A reverse one is left to the other issue's history.
    """
    paths = list(item.update_mask.paths) if item.update_mask else []
    for change in sorted(changes, key=lambda c: not c.removed):
        one_valued = _ONE_VALUED.get(change.kind)
        list_name = _LISTS.get((change.kind, change.reverse, change.removed))
        if list_name is None and (one_valued is None or change.reverse):
            continue
        target = reference(change.target)
        if target is None:
            if counts is not None:
                counts.left_out += 1
            continue
        if list_name is not None:
            values = getattr(item, list_name)
            if target not in values:
                values.append(target)
            if counts is not None:
                counts.kept += 1
            continue
        assert one_valued is not None
        field, path = one_valued
        current = getattr(held, field)
        if (change.removed and current != target) or (not change.removed and current):
            continue  # not the one held; or one is held already
        if counts is not None:
            counts.kept += 1
        target = "" if change.removed else target
        setattr(held, field, target)
        setattr(item, field, target)
        if path not in paths:
            paths.append(path)
    for add, remove in (_RELATION_LISTS[:2], _RELATION_LISTS[2:]):
        both = set(getattr(item, add)) & set(getattr(item, remove))
        if both:  # added and removed by one entry: no change
            setattr(item, add, [v for v in getattr(item, add) if v not in both])
            setattr(item, remove, [v for v in getattr(item, remove) if v not in both])
    if paths:
        item.update_mask = FieldMask(paths=paths)


def has_relation_changes(item: v1.ImportedEntry) -> bool:
    """Whether the item changes a relation (it names another issue, or clears one)."""
    paths = set(item.update_mask.paths) if item.update_mask else set()
    return bool(_RELATION_PATHS & paths) or any(getattr(item, n) for n in _RELATION_LISTS)


def count_relation_changes(request: v1.ImportIssueRequest) -> int:
    """How many relation changes the request's history sends (each reference, each clearing)."""
    total = 0
    for item in request.history:
        paths = set(item.update_mask.paths) if item.update_mask else set()
        total += len(_RELATION_PATHS & paths)
        total += sum(len(getattr(item, name)) for name in _RELATION_LISTS)
    return total


def cut(request: v1.ImportIssueRequest) -> v1.ImportIssueRequest | None:
    """The first pass's request: the history before its first relation change.

    None when the history changes no relation (the request is sent whole).
    Its modified and closed times are left to the Model (the last entry's,
    the last move into a closed status): the source's may be later than the
    cut history.
    """
    for index, item in enumerate(request.history):
        if has_relation_changes(item):
            first = copy.copy(request)
            first.history = request.history[:index]
            first.modified_at = None
            first.closed_at = None
            return first
    return None


def refused_field(error: BuglessError) -> str:
    """The field the Model named when it refused a request ("" when it named none).

    Its ``field`` detail, else the path its message starts with (``path: why``).
    """
    field = error.metadata.get("field", "")
    if not field:
        head, sep, _ = error.message.partition(": ")
        field = head if sep and " " not in head else ""
    return field


def refuses_a_relation_change(error: BuglessError) -> bool:
    """Whether the Model refused a whole history for one of its relation changes.

    Only then does the history without them have a chance: a refusal of
    anything else (an over-long comment, a custom field) stands whatever
    the relations are.
    """
    return bool(_RELATION_FIELD.fullmatch(refused_field(error)))


#: Unicode categories of the marks that belong to the character before them.
_MARKS = frozenset({"Mn", "Mc", "Me"})
_JOINER = "\N{ZERO WIDTH JOINER}"


def _belongs_to_previous(previous: str, char: str) -> bool:
    """Whether ``char`` is part of the character ``previous`` starts, as a reader sees it.

    A mark (an accent, an Indic vowel sign, a variation selector: the
    categories Mn, Mc and Me, whatever their combining class, which is 0
    for many of them), an emoji's skin tone, a zero width joiner, the
    character a joiner joins on, or a tag character (U+E0020..U+E007F: a
    subdivision flag is a black flag followed by tags spelling it, ``gbsct``
    and CANCEL TAG for Scotland's, and without them it is a plain black flag).
    """
    return (
        unicodedata.category(char) in _MARKS
        or _JOINER in (char, previous)
        or "\U0001f3fb" <= char <= "\U0001f3ff"
        or "\U000e0020" <= char <= "\U000e007f"
    )


#: The regional indicator symbols (U+1F1E6..U+1F1FF), a flag's two letters.
_REGIONAL_INDICATORS = "".join(map(chr, range(0x1F1E6, 0x1F200)))


def _cuts_a_flag(kept: str, following: str) -> bool:
    """Whether a cut after ``kept``, before ``following``, splits a flag in two.

    A flag is a pair of regional indicators (U+1F1E6..U+1F1FF, the letters of
    its country code), paired from the start of their run: one ending an odd
    run is the first half of the flag ``following`` completes.
    """
    if following not in _REGIONAL_INDICATORS:
        return False
    run = len(kept) - len(kept.rstrip(_REGIONAL_INDICATORS))
    return run % 2 == 1


def within_reason_length(reason: str) -> str:
    """``reason``, cut to what the Model accepts as an import's reason.

    The Model refuses a ``relations_not_imported`` longer than
    :data:`~bugless_core.limits.MAX_IMPORT_REASON_LENGTH` characters, and the
    reason :func:`without_relations` is given is the Model's own refusal
    message, which names the source's values and has no bound: the retry
    meant to import the issue without its relations would fail on it. A
    longer one keeps its start (what was refused and why) and ends with an
    ellipsis, cut between characters (Python counts them as the Model does)
    and never inside one a reader sees as one (:func:`_belongs_to_previous`):
    a base losing its marks, an emoji sequence losing its tail, a flag
    losing its second letter (:func:`_cuts_a_flag`).
    """
    cap = limits.MAX_IMPORT_REASON_LENGTH
    if len(reason) <= cap:
        return reason
    kept = reason[: cap - 1]
    while kept and (
        _belongs_to_previous(kept[-1], reason[len(kept)]) or _cuts_a_flag(kept, reason[len(kept)])
    ):
        kept = kept[:-1]  # what follows the cut belongs to the character before it
    return kept.rstrip() + "\N{HORIZONTAL ELLIPSIS}"


def without_relations(request: v1.ImportIssueRequest, reason: str) -> v1.ImportIssueRequest:
    """``request`` with no relation changes, each entry that had some saying why.

    For an issue whose relation history the Model refused (a cycle of parents
    or duplicates the source allowed): the rest of its history is imported,
    and the relation pass reports the relation. Every entry stays (one left
    with nothing else keeps the reason), so the history's positions are the
    whole request's and a later ``--refresh`` appends only what is new. The
    reason is a change of the entry (``relations_not_imported``), not a
    comment: its author wrote none; one longer than the Model accepts is
    shortened (:func:`within_reason_length`).
    """
    reason = within_reason_length(reason)
    history = []
    for item in request.history:
        if not has_relation_changes(item):
            history.append(item)
            continue
        mask = item.update_mask.paths if item.update_mask else []
        paths = [p for p in mask if p not in _RELATION_PATHS]
        history.append(
            v1.ImportedEntry(
                author=item.author,
                created_at=item.created_at,
                comment=item.comment,
                fields=item.fields,
                update_mask=FieldMask(paths=paths),
                cc_add=item.cc_add,
                cc_remove=item.cc_remove,
                hotlist_add=item.hotlist_add,
                hotlist_remove=item.hotlist_remove,
                custom_fields=item.custom_fields,
                attachments=item.attachments,
                files_not_imported=item.files_not_imported,
                relations_not_imported=reason,
            )
        )
    stripped = copy.copy(request)
    stripped.history = history
    return stripped
