"""The report of one ``bugless import`` run: what it found and did, as people read it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bugless_core.blobs import describe_size

if TYPE_CHECKING:
    from bugless_import.relations import RelationReport

#: Kinds of relations in the report's words (bugless_import.relations.PHRASES).
_KINDS = {"duplicate_of": "duplicate of", "parent": "sub-issue of", "blocks": "blocking"}


def counted(count: int, one: str, many: str = "") -> str:
    """``count`` with the unit it counts: ``1 issue``, ``3 issues``, ``2 people``.

    Every figure of the report says what it counts (issues, history
    entries, files, people), so that figures of different things on one
    line cannot be read as one kind. ``many`` is the plural where adding
    an ``s`` is wrong.
    """
    return f"{count} {one if count == 1 else many or one + 's'}"


def issue_rate(count: int, seconds: float) -> str:
    """``count`` issues in ``seconds`` as people read a rate: ``1 issue/s``, ``0.4 issues/s``.

    Below 10 a second the rate keeps one decimal, so a slow source (a few seconds
    an issue over a remote API) does not read as ``0 issues/s``; a whole number
    drops the ``.0``. Only exactly ``1`` takes the singular. No time measured
    (``seconds`` 0) reads as ``0 issues/s``, as before.
    """
    rate = count / seconds if seconds > 0 else 0.0
    shown = f"{rate:.0f}" if rate >= 9.95 else f"{rate:.1f}".removesuffix(".0")
    return f"{shown} {'issue' if shown == '1' else 'issues'}/s"


@dataclass
class ImportReport:
    """What a run found and did (``--dry-run``: found and would do)."""

    source: str
    dry_run: bool
    issues: int = 0
    entries: int = 0
    comments: int = 0
    people: int = 0
    attachments: int = 0
    attachment_issues: int = 0
    #: Bytes of the source's files, where the source says (``attachments_unsized`` do not).
    attachment_bytes: int = 0
    attachments_unsized: int = 0
    #: Files whose content this run sent to the Model, and their bytes.
    files_sent: int = 0
    bytes_sent: int = 0
    #: (external id, file name, why) of files left out.
    files_skipped: list[tuple[str, str, str]] = field(default_factory=list)
    #: Of those, files the Model refused in an earlier run, not read again.
    files_refused_before: int = 0
    matched: Counter[str] = field(default_factory=Counter)
    #: (source person, account username, "email" or "username"): whom an
    #: existing account now stands for, to be checked before a real run.
    matches: list[tuple[str, str, str]] = field(default_factory=list)
    placeholders: list[str] = field(default_factory=list)
    components_to_create: list[str] = field(default_factory=list)
    unmapped: list[tuple[str, str, int]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    #: (where, whom the source shows it to) of comments left out because the
    #: source restricts who may read them (:attr:`Importer.withheld`).
    withheld: list[tuple[str, str]] = field(default_factory=list)
    #: (issue, whom the source shows it to) of issues left out because the
    #: source restricts who may read them (:attr:`Importer.restricted_issues`).
    restricted_issues: list[tuple[str, str]] = field(default_factory=list)
    #: ``--restricted-component``: where those issues go ("": left out).
    restricted_component: str = ""
    #: What was found of that component's ACL against the import's.
    restricted_checked: list[str] = field(default_factory=list)
    #: (issue, who and why) of the restricted issues naming people (reporter,
    #: assignee, CC) who cannot view that component (:mod:`.restricted`).
    restricted_unseen: list[tuple[str, str]] = field(default_factory=list)
    #: How many of the other issues were judged (:mod:`.viewers`; 0: not
    #: checked, or every one was imported by an earlier run), and (issue,
    #: "component: who and why") of those naming people whose accounts their
    #: component's access list leaves out.
    viewers_judged: int = 0
    unseen: list[tuple[str, str]] = field(default_factory=list)
    #: The same, of the issues an earlier run imported (a resumed run, or a
    #: re-run): judged again as the access lists are now, listed apart.
    viewers_judged_before: int = 0
    unseen_before: list[tuple[str, str]] = field(default_factory=list)
    #: (where, what) of records in a shape the importer does not know, left
    #: out (:attr:`Importer.not_understood`).
    not_understood: list[tuple[str, str]] = field(default_factory=list)
    #: (where, what it was kept as) of ids the source no longer names
    #: (:attr:`Importer.unnamed`).
    unnamed: list[tuple[str, str]] = field(default_factory=list)
    created: int = 0
    extended: int = 0
    unchanged: int = 0
    done_before: int = 0
    entries_written: int = 0
    interrupted: bool = False
    #: What the operator must act on (e.g. no redirects CSV without ``--new-url``).
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: The relation pass (None: the source lists no relations, or the run stopped before it).
    relations: RelationReport | None = None
    #: The history's relation changes sent with their entries, and those left
    #: out (naming an issue outside the import): :mod:`.relation_history`.
    relation_changes: int = 0
    relation_changes_left_out: int = 0
    #: Those the Model refused (a cycle): their issues' warnings name why.
    relation_changes_refused: int = 0

    def render(self) -> str:
        """The report as people read it."""
        what = "would import" if self.dry_run else "imported"
        lines = [
            f"bugless import {self.source}{' (dry run)' if self.dry_run else ''}",
            f"  source: {counted(self.issues, 'issue')}, "
            f"{counted(self.entries, 'history entry', 'history entries')} after creation "
            f"({self.comments} with a comment), {counted(self.people, 'person', 'people')}",
        ]
        if self.matched or self.placeholders:
            by = ", ".join(f"{n} by {how}" for how, n in sorted(self.matched.items()))
            matched = counted(sum(self.matched.values()), "person", "people")
            lines.append(f"  people matched to accounts: {matched}" + (f" ({by})" if by else ""))
            lines += [
                f"    {source} -> {account} (by {how})"
                for source, account, how in sorted(self.matches)[:200]
            ]
            verb = "to create" if self.dry_run else "created or reused"
            lines.append(f"  placeholder accounts {verb}: {len(self.placeholders)}")
            lines += [f"    {name}" for name in self.placeholders[:50]]
        if self.components_to_create:
            verb = "to create" if self.dry_run else "created"
            lines.append(f"  components {verb}: {len(self.components_to_create)}")
            lines += [f"    {path}" for path in self.components_to_create]
        if self.skipped:
            lines.append(
                f"  issues skipped, gone from the source while reading: {len(self.skipped)}"
            )
            lines += [f"    {why}" for why in self.skipped[:50]]
        if self.withheld:
            lines.append(
                f"  restricted comments not imported: {len(self.withheld)} (bugless has no "
                "per-comment visibility: imported, everyone who may read the issue would read them)"
            )
            lines += [f"    {where}: {whom}" for where, whom in self.withheld[:200]]
        if self.restricted_issues and self.restricted_component:
            lines.append(
                f"  restricted issues {'to import' if self.dry_run else 'imported'} into "
                f"{self.restricted_component} (the source shows "
                f"them only to some readers): {counted(len(self.restricted_issues), 'issue')}"
            )
            lines += [f"    {key}: {whom}" for key, whom in self.restricted_issues[:200]]
        elif self.restricted_issues:
            lines.append(
                f"  restricted issues not imported: {len(self.restricted_issues)} (the source "
                "shows them only to some readers; in bugless whoever reads their component "
                "would read them: give --restricted-component a component only those may read)"
            )
            lines += [f"    {key}: {whom}" for key, whom in self.restricted_issues[:200]]
        if self.restricted_checked:
            lines.append(f"  restricted component checked: {self.restricted_component}")
            lines += [f"    {line}" for line in self.restricted_checked]
        if self.restricted_unseen:
            lines.append(
                f"  restricted issues naming people who cannot view {self.restricted_component}: "
                f"{counted(len(self.restricted_unseen), 'issue')} (bugless will neither show "
                "them the issue nor mail them about it: give them access, or leave them out)"
            )
            lines += [f"    {key}: {who}" for key, who in self.restricted_unseen[:200]]
        if self.viewers_judged:
            lines.append(
                f"  issues naming people who cannot view them in their component: "
                f"{counted(len(self.unseen), 'issue')} of {counted(self.viewers_judged, 'issue')} "
                "judged (the source showed them the issue; bugless will neither show it to them "
                "nor mail them about it: give them access to the component, or map the issues "
                "elsewhere. Who may view an issue in bugless but could not in the source is not "
                "judged: no importer reads the source's readers of an issue, only whether it "
                "restricts it)"
            )
            lines += [f"    {key} in {where_who}" for key, where_who in self.unseen[:200]]
        if self.viewers_judged_before:
            lines.append(
                "  issues an earlier run imported naming people who cannot view them in their "
                f"component: {counted(len(self.unseen_before), 'issue')} of "
                f"{counted(self.viewers_judged_before, 'issue')} judged again (as the access "
                "lists are now: one given access since is not listed; these are in bugless "
                "already, and this report replaces the earlier run's)"
            )
            lines += [f"    {key} in {where_who}" for key, where_who in self.unseen_before[:200]]
        if self.not_understood:
            lines.append(
                f"  source records in a shape the importer does not know, not imported: "
                f"{len(self.not_understood)}"
            )
            lines += [f"    {where}: {what}" for where, what in self.not_understood[:200]]
        if self.unnamed:
            lines.append(
                f"  ids the source no longer names, kept under a stand-in: {len(self.unnamed)}"
            )
            lines += [f"    {where}: {what}" for where, what in self.unnamed[:200]]
        if self.attachments:
            size = describe_size(self.attachment_bytes)
            if not size.endswith(" bytes"):
                size += f" ({self.attachment_bytes} bytes)"
            if self.attachments_unsized:
                size += f" and {self.attachments_unsized} of a size the source does not say"
            lines.append(
                f"  attachments: {counted(self.attachments, 'file')} on "
                f"{counted(self.attachment_issues, 'issue')}, {size}"
                + (" would be copied" if self.dry_run else "")
            )
        if not self.dry_run and (self.files_sent or self.files_skipped):
            lines.append(
                f"  files copied: {self.files_sent} ({counted(self.bytes_sent, 'byte')}); "
                f"files skipped: {len(self.files_skipped)}"
            )
            if self.files_refused_before:
                lines.append(
                    f"  files the Model refused before, not read again: "
                    f"{self.files_refused_before} (--retry-refused reads them)"
                )
            lines += [
                f"    {external_id}: {name!r} not copied: {why}"
                for external_id, name, why in self.files_skipped
            ]
        if self.relation_changes or self.relation_changes_left_out:
            lines.append(
                f"  relation changes in the history: {self.relation_changes} imported with "
                f"their entries, {self.relation_changes_left_out} left out (an issue outside "
                "the import)"
                + (
                    f", {self.relation_changes_refused} refused by the Model (below)"
                    if self.relation_changes_refused
                    else ""
                )
            )
        lines += self._relation_lines()
        if self.unmapped:
            lines.append("  unmapped values (add them to the mapping file):")
            lines += [f"    [{s}] {v!r}: {_uses(s, n)}" for s, v, n in self.unmapped]
        if not self.dry_run:
            lines.append(
                f"  issues {what}: {self.created} new, {self.extended} with newer history, "
                f"{self.unchanged} unchanged, {self.done_before} done in an earlier run; "
                f"history entries written: {self.entries_written} ({self._written_parts()})"
            )
            done = self.created + self.extended + self.unchanged
            lines.append(f"  {self.seconds:.1f} s, {issue_rate(done, self.seconds)}")
        lines.extend(f"  WARNING: {warning}" for warning in self.warnings)
        if self.interrupted:
            lines.append("  INTERRUPTED: run the same command again to import the rest")
        return "\n".join(lines)

    def _written_parts(self) -> str:
        """What ``entries_written`` adds up: each new issue's creation entry, then the rest.

        The source's count leaves the creation out (it is the issue itself, not
        a change of it), so without this split the two figures seemed to disagree.
        """
        later = self.entries_written - self.created
        new = "a new issue" if self.created == 1 else "new issues"
        return f"{self.created} creating {new}, {later} after creation"

    def _relation_lines(self) -> list[str]:
        """Relations found, set, and not set with why (each one named)."""
        found = self.relations
        if found is None:
            return []
        lines: list[str] = []
        total = sum(found.found.values())
        if total:
            kinds = ", ".join(f"{n} {_KINDS[k]}" for k, n in sorted(found.found.items()))
            if self.dry_run:
                done = f"{total - len(found.unresolved) - len(found.refused)} to set"
            else:
                done = f"set {found.set}, already there {found.present}"
            not_set = len(found.unresolved) + len(found.refused)
            lines.append(f"  relations: {total} ({kinds}); {done}, not set {not_set}")
            lines += [f"    not set ({why}): {link}" for link, why in found.unresolved[:200]]
            lines += [f"    not set: {link}: {why}" for link, why in found.refused[:200]]
        if found.unsupported:
            lines.append(
                f"  relations bugless does not hold, not imported: {len(found.unsupported)}"
            )
            lines += [f"    {link}" for link in found.unsupported[:200]]
        return lines


def _uses(section: str, count: int) -> str:
    """How often an unmapped value was met, in what it counts.

    A label is counted once per issue holding it (``dry_run.count_labels``);
    a status, priority, type or severity each time an issue or one of its
    changes names it.
    """
    if section == "labels":
        return f"on {counted(count, 'issue')}"
    return f"{counted(count, 'time')} in issues and their changes"
