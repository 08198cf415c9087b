"""One source issue as an ImportIssueRequest: mapped values, people, the state at creation.

Sources log a change with its old and new value and show the issue as it is
now; the Model wants the issue as it was created and the deltas after it.
The state at creation is therefore the final state with every logged change
rolled back (a field's first logged ``old`` value, the cc list with every
later addition undone), and each entry becomes a delta of the fields it
changed. Replaying those on the Model gives the source's final state again
whenever the source's log is complete.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from bugless_core.errors import FailedPrecondition
from bugless_core.importer import SourceAttachment, SourceChange, SourceIssue
from bugless_core.issue_references import imported_file_link
from bugless_import.mapping import Mapping as ValueMapping
from bugless_import.relation_history import (
    HeldRelations,
    RelationChanges,
    apply_relation_changes,
    has_relation_changes,
)
from bugless_import.sources.markup import cite_source_issues
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask

#: A person key the source gives for nobody (a deleted account).
GHOST = "ghost"
_SCALARS = ("title", "status", "priority", "type", "severity", "component", "assignee")
_ENUM_SECTIONS = {"priority": "priorities", "type": "types", "severity": "severities"}


@dataclass
class Resolved:
    """What the run resolved before converting: people, components, label targets.

    Attributes:
        people: Person key -> bugless user id.
        components: Source component name -> component id ("" is the default).
        labels: Component id, labels and the external id of the issue
            holding them -> hotlist ids and custom field values (the issue
            named so that what it cannot map is counted once per issue).
    """

    people: Mapping[str, str]
    components: Mapping[str, int]
    labels: Callable[[int, Sequence[str], str], tuple[list[int], list[v1.CustomFieldValue]]] = (
        field(default=lambda _component, _labels, _external_id: ([], []))
    )


def _status(mapping: ValueMapping, value: str, closed: bool) -> int:
    mapped = mapping.enum("statuses", value)
    if mapped:
        return mapped
    is_closed = closed or value.lower().startswith(("closed", "done", "resolved"))
    return int(v1.Status.FIXED if is_closed else v1.Status.NEW)


def initial_values(issue: SourceIssue) -> tuple[dict[str, str], list[str]]:
    """The source's values and cc at creation: the final ones with the log rolled back."""
    final = {
        "title": issue.title,
        "status": issue.status,
        "priority": issue.priority,
        "type": issue.type,
        "severity": issue.severity,
        "component": issue.component,
        "assignee": issue.assignee,
    }
    initial = dict(final)
    seen: set[str] = set()
    for entry in issue.entries:
        for change in entry.changes:
            if change.field in final and change.field not in seen:
                seen.add(change.field)
                initial[change.field] = change.old
    if not initial["title"]:
        initial["title"] = issue.title
    cc = set(issue.cc)
    for entry in reversed(issue.entries):
        for change in entry.changes:
            if change.field == "cc":
                cc = (cc - set(change.added)) | set(change.removed)
    return initial, sorted(cc)


def initial_labels(issue: SourceIssue) -> list[str]:
    """The labels at creation: the current ones with every logged change undone."""
    labels = set(issue.labels)
    for entry in reversed(issue.entries):
        for change in entry.changes:
            if change.field == "labels":
                labels = (labels - set(change.added)) | set(change.removed)
    return sorted(labels)


@dataclass
class _LabelReplay:
    """The labels through the history, each change as mapped hotlists and field values.

    The changes are applied at creation too: the request starts the issue
    from the labels at creation (``initial_hotlist_ids`` and
    ``initial_custom_fields``, with ``hotlists_replayed`` and
    ``custom_fields_replayed``), so each change is its entry's, with the
    source's author and time.

    A move (:meth:`move`) maps the labels to the new component's fields in
    its entry, labels changed or not: the Model drops the values of fields
    the new component does not have, as a live move does, and the entry
    sets those the labels give there (a field of the new component's own
    with the same name, say), so that the issue holds what an import of it
    created there would.
    """

    resolved: Resolved
    component_id: int
    labels: list[str]
    #: The issue's external id (:attr:`Resolved.labels` counts by it).
    external_id: str
    #: The component before the entry's move (:meth:`move`), else None.
    moved_from: int | None = None

    def move(self, component_id: int) -> None:
        """The entry about to be applied moves the issue to ``component_id``."""
        if component_id != self.component_id:
            self.moved_from, self.component_id = self.component_id, component_id

    def apply(self, item: v1.ImportedEntry, changes: Sequence[SourceChange]) -> None:
        """Set ``item``'s hotlist and custom field changes for its label changes and move."""
        before = self.component_id if self.moved_from is None else self.moved_from
        self.moved_from = None
        after = set(self.labels)
        for change in changes:
            if change.field == "labels":
                after = (after - set(change.removed)) | set(change.added)
        if after == set(self.labels) and before == self.component_id:
            return
        old_hotlists, old_values = self.resolved.labels(before, self.labels, self.external_id)
        old_labels, self.labels = self.labels, sorted(after)
        new_hotlists, new_values = self.resolved.labels(
            self.component_id, self.labels, self.external_id
        )
        item.hotlist_add = sorted(set(new_hotlists) - set(old_hotlists))
        item.hotlist_remove = sorted(set(old_hotlists) - set(new_hotlists))
        old = {v.field_id: list(v.values) for v in old_values}
        new = {v.field_id: list(v.values) for v in new_values}
        cleared = set(old) - set(new)
        if cleared and before != self.component_id:
            # Only a field the new component has can be cleared; the Model
            # drops the others' values with the move.
            _, there = self.resolved.labels(self.component_id, old_labels, self.external_id)
            cleared &= {v.field_id for v in there}
        item.custom_fields = [
            v1.CustomFieldValue(field_id=fid, values=new.get(fid, []))
            for fid in sorted(cleared | set(new))
            if old.get(fid) != new.get(fid)
        ]


def person(resolved: Resolved, key: str) -> str:
    """The user id of a person key ("" for nobody)."""
    if not key:
        return ""
    found = resolved.people.get(key)
    if found:
        return found
    try:
        return resolved.people[GHOST]  # a dry run's stand-ins answer any key
    except KeyError:
        raise FailedPrecondition(f"no bugless account was matched or made for {key!r}") from None


def history_times(
    issue: SourceIssue, *, with_files: bool = True
) -> tuple[list[datetime], list[datetime]]:
    """The times :func:`to_request` gives ``issue.attachments``' entries and ``issue.entries``.

    The source's times, except that the history is in time order: an entry
    is never before the one before it (nor before the issue's creation), so
    a file listed as attached before the issue was created (Jira's clones
    and moves do that) is attached at its creation. The Model keeps a
    file's time as its entry's, so a refresh finds a stored file by this
    time, not the source's (:mod:`bugless_import.files`). ``with_files``
    False: no file entries (as ``to_request`` with ``files`` None); the
    files' list is then empty.
    """
    files_at: list[datetime] = []
    entries_at: list[datetime] = []
    previous = issue.created_at
    pending = list(issue.attachments) if with_files else []
    for entry in issue.entries:
        while pending and pending[0].at < entry.at:
            previous = max(pending.pop(0).at, previous)
            files_at.append(previous)
        previous = max(entry.at, previous)
        entries_at.append(previous)
    for file in pending:
        previous = max(file.at, previous)
        files_at.append(previous)
    return files_at, entries_at


def to_request(
    issue: SourceIssue,
    external_id: str,
    mapping: ValueMapping,
    resolved: Resolved,
    caller: v1.Caller,
    *,
    reference_link: Callable[[str], str] = lambda _number: "",
    files: Sequence[v1.ImportedAttachment | str] | None = None,
    entry_files: Sequence[Sequence[v1.ImportedAttachment | str]] | None = None,
    relation_reference: Callable[[str], str | None] = lambda _key: None,
    relation_counts: RelationChanges | None = None,
) -> v1.ImportIssueRequest:
    """The ImportIssue call for ``issue``.

    ``reference_link`` is the importer's
    :meth:`~bugless_core.importer.Importer.references_in` ``issue``:
    references to the source's issues in the text are linked there. ``files``
    are ``issue.attachments`` as the run stored them (or, as text, why one
    was not): each becomes an entry of its uploader at its time, among the
    others by time. A file not stored keeps its entry, which says why, so
    that the history's positions do not depend on what a run could copy.
    None: no file entries (a dry run). ``entry_files`` are each entry's
    ``attachments`` (files its comment links) as stored, in the same way:
    they ride on the entry itself. A stored file with a ``link`` has that
    link in its text (the comment, or the description) rewritten to
    :func:`imported_file_link`; one not stored keeps the source's link. A
    file of ``issue.attachments`` not stored whose ``sha256`` the text links
    by (Trac's) has those links replaced by its name and why
    (:func:`unlink_file`). ``relation_reference`` gives the external id of a source key an entry's
    relation change names, None for an issue outside the import (the change
    is left out and counted in ``relation_counts``): see
    :mod:`bugless_import.relation_history`.
    """
    not_imported = [
        (a.sha256, why)
        for a, why in zip(issue.attachments, files or (), strict=False)
        if a.sha256 and isinstance(why, str)
    ]

    def text(markdown: str) -> str:
        for sha256, why in not_imported:
            markdown = unlink_file(markdown, imported_file_link(external_id, sha256), why)
        return cite_source_issues(markdown, reference_link)

    def relinked(markdown: str, pairs: Sequence[tuple[SourceAttachment, object]]) -> str:
        """``markdown`` with the links of the stored linked files pointing at their copies."""
        for source, stored in pairs:
            if source.link and isinstance(stored, v1.ImportedAttachment):
                copy = imported_file_link(external_id, stored.sha256, source.link)
                markdown = markdown.replace(source.link, copy)
        return markdown

    initial, cc = initial_values(issue)
    component_id = resolved.components.get(initial["component"]) or resolved.components[""]
    fields = v1.IssueFields(
        title=initial["title"][:500],
        status=v1.Status(_status(mapping, initial["status"], closed=False)),
        component_id=component_id,
        assignee=person(resolved, initial["assignee"]),
    )
    for name, section in _ENUM_SECTIONS.items():
        setattr(fields, name, type(getattr(fields, name))(mapping.enum(section, initial[name])))
    hotlists, custom = resolved.labels(component_id, issue.labels, external_id)
    initial_hotlists, initial_custom = resolved.labels(
        component_id, initial_labels(issue), external_id
    )
    history: list[v1.ImportedEntry] = []
    files_at, entries_at = history_times(issue, with_files=files is not None)
    file_times = iter(files_at)
    last = max([issue.created_at, *files_at, *entries_at])
    description = issue.description
    labels = _LabelReplay(resolved, component_id, initial_labels(issue), external_id)
    held = HeldRelations()
    edits = [c for e in issue.entries for c in e.changes if c.field == "description"]
    if edits:
        description = edits[0].old  # the text at creation; the edits follow as entries
    attached = list(zip(issue.attachments, files, strict=True)) if files is not None else []
    description = relinked(description, attached)
    per_entry = (
        [
            list(zip(e.attachments, f, strict=True))
            for e, f in zip(issue.entries, entry_files, strict=True)
        ]
        if entry_files is not None
        else [[] for _ in issue.entries]
    )

    def attach_until(until: datetime | None) -> None:
        while attached and (until is None or attached[0][0].at < until):
            source, stored = attached.pop(0)
            author = person(resolved, source.author or GHOST)
            history.append(_file_entry(source, stored, author, next(file_times), text))

    for entry, linked, at in zip(issue.entries, per_entry, entries_at, strict=True):
        attach_until(entry.at)
        for change in entry.changes:
            if change.field == "description" and change.new.strip() and change.new != change.old:
                history.append(
                    v1.ImportedEntry(
                        author=person(resolved, entry.author or GHOST),
                        created_at=at,
                        comment=text(change.new),
                        edits_description=True,
                    )
                )
        item = v1.ImportedEntry(
            author=person(resolved, entry.author or GHOST),
            created_at=at,
            comment=text(relinked(entry.comment, linked)),
            attachments=[f for _, f in linked if isinstance(f, v1.ImportedAttachment)],
        )
        delta = v1.IssueFields()
        paths: list[str] = []
        for change in entry.changes:
            if change.field == "cc":
                item.cc_add = [person(resolved, k) for k in change.added if k]
                item.cc_remove = [person(resolved, k) for k in change.removed if k]
                continue
            if change.field not in _SCALARS:
                continue
            target, value = _delta_value(change.field, change.new, mapping, resolved)
            if target is None:
                continue
            setattr(delta, target, value)
            if target not in paths:
                paths.append(target)
        if paths:
            item.fields = delta
            item.update_mask = FieldMask(paths=paths)
        if entry.relations:
            apply_relation_changes(item, entry.relations, relation_reference, held, relation_counts)
        if "component_id" in paths:
            labels.move(delta.component_id)
        labels.apply(item, entry.changes)
        item.cc_add = sorted(set(item.cc_add) - set(item.cc_remove))
        item.cc_remove = sorted(set(item.cc_remove))
        if (
            paths
            or item.cc_add
            or item.cc_remove
            or item.hotlist_add
            or item.hotlist_remove
            or item.custom_fields
            or item.comment.strip()
            or item.attachments
            or has_relation_changes(item)
        ):
            history.append(item)
    attach_until(None)
    return v1.ImportIssueRequest(
        caller=caller,
        external_id=external_id,
        fields=fields,
        reporter=person(resolved, issue.reporter or GHOST),
        description=text(description),
        cc=sorted({person(resolved, k) for k in cc if k}),
        created_at=issue.created_at,
        history=history,
        modified_at=max(issue.modified_at, last) if issue.modified_at else None,
        closed_at=issue.closed_at,
        hotlist_ids=hotlists,
        # The values now, for a Model of an earlier release, which ignores
        # the four below (and leaves the history's changes unrecorded).
        custom_fields=custom,
        custom_fields_replayed=True,
        initial_custom_fields=initial_custom,
        hotlists_replayed=True,
        initial_hotlist_ids=initial_hotlists,
    )


def unlink_file(markdown: str, link: str, why: str) -> str:
    """``markdown`` with its links to ``link`` (a file not imported) as text saying why.

    A Trac text naming one of its ticket's files (``attachment:big.bin``)
    links bugless's copy by its content; a file the run did not import has
    none, and the link would lead to the issue's files instead, as if it
    were there. Each ``[label](link...)`` or image becomes ``label (not
    imported: why)``; the file's own entry says why too.
    """
    pattern = re.compile(
        r"!?\[(?P<label>(?:\\.|[^\[\]\\\n])*)\]\(" + re.escape(link) + r"(?:&[^)\s]*)?\)"
    )
    return pattern.sub(lambda m: f"{m['label']} (not imported: {why})", markdown)


def _file_entry(
    source: SourceAttachment,
    stored: v1.ImportedAttachment | str,
    author: str,
    at: datetime,
    text: Callable[[str], str],
) -> v1.ImportedEntry:
    """The entry attaching one source file (or saying why it was not copied).

    The source's description of the file (a Trac or Redmine attachment's)
    is the attachment's own (``ImportedAttachment.description``), as the
    source shows it next to the file: the entry writes no comment, so the
    issue counts no comment for it. A file not copied has no attachment to
    carry it: the entry records it as not imported, with why and its
    description (``files_not_imported``, a change of the entry), again no
    comment: the uploader wrote none.
    """
    comment = text(source.comment)
    if isinstance(stored, str):
        left_out = v1.NotImportedFile(name=source.name, reason=stored, description=comment)
        return v1.ImportedEntry(author=author, created_at=at, files_not_imported=[left_out])
    described = dataclasses.replace(stored, description=comment)
    return v1.ImportedEntry(author=author, created_at=at, attachments=[described])


def _delta_value(
    source_field: str, new: str, mapping: ValueMapping, resolved: Resolved
) -> tuple[str | None, object]:
    if source_field == "title":
        return ("title", new[:500]) if new.strip() else (None, None)
    if source_field == "status":
        return "status", v1.Status(_status(mapping, new, closed=False))
    if source_field == "component":
        return "component_id", resolved.components.get(new) or resolved.components[""]
    if source_field == "assignee":
        return "assignee", person(resolved, new)
    section = _ENUM_SECTIONS[source_field]
    value = mapping.enum(section, new)
    if not value:
        return None, None
    enum = {"priority": v1.Priority, "type": v1.IssueType, "severity": v1.Severity}[source_field]
    return source_field, enum(value)
