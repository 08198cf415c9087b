"""What a ``--dry-run`` counts, and the label counting every run shares.

A dry run converts every issue once with stand-in ids (no person, component
or issue is resolved), which is enough to count issues, entries, unmapped
values and relation changes, and plans the relation pass against this run's
issues and those imported before. Moved from :mod:`bugless_import.runner`
unchanged, so that the run's order of work reads in one module under 600 lines.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from bugless_core.importer import Importer, SourceIssue
from bugless_import import convert, relation_history, relations
from bugless_import.mapping import Mapping
from bugless_import.report import ImportReport
from bugless_import.settings import ImportSettings
from bugless_import.state import DoneState
from bugless_proto import v1


def convert_all(
    importer: Importer, issues: Sequence[SourceIssue], mapping: Mapping, report: ImportReport
) -> None:
    """Convert every issue with stand-in ids: what counts unmapped values and relation changes."""

    class _Anyone(dict[str, str]):
        def __missing__(self, key: str) -> str:
            return key or convert.GHOST

    class _AnyComponent(dict[str, int]):
        def __missing__(self, key: str) -> int:
            return 1

    resolved = convert.Resolved(people=_Anyone(), components=_AnyComponent())
    count_labels(issues, mapping)
    in_import = {importer.external_id(issue) for issue in issues}
    counts = relation_history.RelationChanges()

    def reference(key: str) -> str | None:
        external_id = importer.key_external_id(key)
        return external_id if external_id in in_import else None

    for issue in issues:
        external_id = importer.external_id(issue)
        link = importer.references_in(issue)
        convert.to_request(
            issue, external_id, mapping, resolved, v1.Caller(), reference_link=link,
            relation_reference=reference, relation_counts=counts,
        )  # fmt: skip
    report.relation_changes = counts.kept
    report.relation_changes_left_out = counts.left_out


def relations_found(
    importer: Importer,
    issues: Sequence[SourceIssue],
    found: Sequence[relations.Link],
    settings: ImportSettings,
) -> relations.RelationReport | None:
    """What the relation pass would find: this run's issues and those imported before."""
    if not found:
        return None
    known = {importer.external_id(i): 0 for i in issues}
    known.update(DoneState.read(settings.state_dir, importer.name))
    return relations.plan(found, known)[0]


def count_labels(issues: Iterable[SourceIssue], mapping: Mapping) -> None:
    """Count each issue's unmapped labels once: the report's "on N issues"."""
    for issue in issues:
        for label in sorted(set(issue.labels)):
            mapping.label(label)
