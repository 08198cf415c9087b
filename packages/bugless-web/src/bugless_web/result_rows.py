"""The body rows of a result table, written in Python rather than by the template.

A list page's table is 50 rows of up to a dozen cells. Drawn by Jinja, every
cell walked an ``if/elif`` chain over the column names and every value went
through autoescaping, which makes a ``Markup`` object per interpolation: the
rows were about half of the web tier's CPU on a list page (bench/JOURNAL.md,
"Web tier, #23 second pass"). Here a cell writer is picked once per column,
the pills of the enums are strings made once per process, each person's chip
is made once per table, and text is escaped with plain string replaces into
the same entities markupsafe uses; the body becomes one ``Markup`` at the end.

The header row, the empty-table row and everything around the table stay in
``_macros.html`` (``results_table``), which calls :func:`result_rows`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from markupsafe import Markup

from bugless_core.issue_labels import type_label
from bugless_proto import v1
from bugless_web.display import escape_text, level_pill, status_pill, timestamp, user_chip
from bugless_web.searching import SearchResults

_PRIORITY_PILLS = {p: str(level_pill(p)) for p in v1.Priority}
_SEVERITY_PILLS = {s: str(level_pill(s)) for s in v1.Severity}
_STATUS_PILLS = {s: str(status_pill(s)) for s in v1.Status}
_TYPE_LABELS = {t: escape_text(type_label(t)) for t in v1.IssueType}

#: Writes one cell's content: (results, issue, person chips made so far, column).
_Cell = Callable[[SearchResults, v1.Issue, dict[str, str], str], str]


def _chip(results: SearchResults, chips: dict[str, str], user_id: str) -> str:
    chip = chips.get(user_id)
    if chip is None:
        chip = chips[user_id] = str(user_chip(results.users, user_id))
    return chip


def _id(results: SearchResults, issue: v1.Issue, chips: dict[str, str], column: str) -> str:
    return f'<a href="/issues/{issue.id}" class="open-link">{issue.id}</a>'


def _title(results: SearchResults, issue: v1.Issue, chips: dict[str, str], column: str) -> str:
    return f'<a href="/issues/{issue.id}">{escape_text(issue.title)}</a>'


def _priority(results: SearchResults, issue: v1.Issue, chips: dict[str, str], column: str) -> str:
    return _PRIORITY_PILLS.get(issue.priority) or level_pill(issue.priority)


def _severity(results: SearchResults, issue: v1.Issue, chips: dict[str, str], column: str) -> str:
    return _SEVERITY_PILLS.get(issue.severity) or level_pill(issue.severity)


def _type(results: SearchResults, issue: v1.Issue, chips: dict[str, str], column: str) -> str:
    return _TYPE_LABELS.get(issue.type) or escape_text(type_label(issue.type))


def _status(results: SearchResults, issue: v1.Issue, chips: dict[str, str], column: str) -> str:
    return _STATUS_PILLS.get(issue.status) or status_pill(issue.status)


def _assignee(results: SearchResults, issue: v1.Issue, chips: dict[str, str], column: str) -> str:
    return _chip(results, chips, issue.assignee)


def _reporter(results: SearchResults, issue: v1.Issue, chips: dict[str, str], column: str) -> str:
    return _chip(results, chips, issue.reporter)


def _verifier(results: SearchResults, issue: v1.Issue, chips: dict[str, str], column: str) -> str:
    return _chip(results, chips, issue.verifier)


def _component(results: SearchResults, issue: v1.Issue, chips: dict[str, str], column: str) -> str:
    path = results.components.get(issue.component_id, issue.component_id)
    return f'<a href="/components/{issue.component_id}">{escape_text(path)}</a>'


def _created(results: SearchResults, issue: v1.Issue, chips: dict[str, str], column: str) -> str:
    return str(timestamp(issue.created_at))


def _modified(results: SearchResults, issue: v1.Issue, chips: dict[str, str], column: str) -> str:
    return str(timestamp(issue.modified_at))


def _custom(results: SearchResults, issue: v1.Issue, chips: dict[str, str], column: str) -> str:
    return escape_text(", ".join(results.custom_values(issue, column)))


def _nothing(results: SearchResults, issue: v1.Issue, chips: dict[str, str], column: str) -> str:
    return ""


_CELLS: dict[str, _Cell] = {
    "id": _id,
    "title": _title,
    "priority": _priority,
    "severity": _severity,
    "type": _type,
    "status": _status,
    "assignee": _assignee,
    "reporter": _reporter,
    "verifier": _verifier,
    "component": _component,
    "created": _created,
    "modified": _modified,
}


def result_rows(results: SearchResults, columns: Sequence[str], *, selectable: bool) -> Markup:
    """The ``<tr>`` of every issue in ``results``, in ``columns`` (a check box first if asked).

    Each column's header label is worked out once per table (a custom
    field's scans the page's issues), not once per cell.
    """
    cells = [
        (
            _CELLS.get(column) or (_custom if column.startswith("customfield") else _nothing),
            column,
            f'<td class="col-{escape_text(column)}" '
            f'data-label="{escape_text(results.column_label(column))}">',
        )
        for column in columns
    ]
    chips: dict[str, str] = {}
    out: list[str] = []
    for issue in results.issues:
        out.append(f'<tr class="row" data-href="/issues/{issue.id}">')
        if selectable:
            out.append(
                f'<td class="sel"><input type="checkbox" name="issue" '
                f'value="{issue.id}:{issue.version}" aria-label="Select issue {issue.id}" '
                'form="bulk"></td>'
            )
        for write, column, opening in cells:
            out.append(opening)
            out.append(write(results, issue, chips, column))
            out.append("</td>")
        out.append("</tr>\n")
    return Markup("".join(out))


__all__ = ["result_rows"]
