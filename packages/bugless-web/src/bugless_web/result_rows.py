"""The body rows of a result table, written in Python rather than by the template.

A list page's table is 50 rows of up to a dozen cells. Drawn by Jinja, every
cell walked an ``if/elif`` chain over the column names and every value went
through autoescaping, which makes a ``Markup`` object per interpolation: the
rows were about half of the web tier's CPU on a list page (bench/JOURNAL.md,
"Web tier, #23 second pass"). Here the pills of the enums are strings made
once per process, each person's chip is made once per table, and text is
escaped with plain string replaces into the same entities markupsafe uses;
the body becomes one ``Markup`` at the end.

Each set of columns gets a row writer of its own, made once per process
(:func:`_row_writer`): one f-string per row with every cell inline, compiled
from a fixed fragment per built-in column. A function per cell cost a call
per cell, 400 per page, which was half of writing the rows. Nothing from the
request goes into the compiled source: a column name only picks a fragment,
and a custom field's cell (whose label is per page) is a function the
writer is handed.

The header row, the empty-table row and everything around the table stay in
``_macros.html`` (``results_table``), which calls :func:`result_rows`.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Callable, Sequence
from typing import Any

from markupsafe import Markup

from bugless_core.issue_labels import type_label
from bugless_proto import v1
from bugless_web.display import escape_text, level_pill, status_pill, user_chip
from bugless_web.searching import SearchResults

_PRIORITY_PILLS = {p: str(level_pill(p)) for p in v1.Priority}
_SEVERITY_PILLS = {s: str(level_pill(s)) for s in v1.Severity}
_STATUS_PILLS = {s: str(status_pill(s)) for s in v1.Status}
_TYPE_LABELS = {t: escape_text(type_label(t)) for t in v1.IssueType}

#: Writes one whole cell of a column that is not built in, ``<td>`` to
#: ``</td>``: (results, issue, person chips made so far).
_Cell = Callable[[SearchResults, v1.Issue, dict[str, str]], str]
#: Writes the rows: (results, issues, person chips, the other columns' cells).
_Rows = Callable[[SearchResults, Sequence[v1.Issue], dict[str, str], Sequence[_Cell]], list[str]]


def _chip(results: SearchResults, chips: dict[str, str], user_id: str) -> str:
    chip = chips.get(user_id)
    if chip is None:
        chip = chips[user_id] = str(user_chip(results.users, user_id))
    return chip


@functools.lru_cache(maxsize=4096)
def _time(value: datetime.datetime | None) -> str:
    """A row's ``<time>``, kept per instant (as :func:`bugless_web.display.timestamp`).

    Without the ``title`` the issue page's times carry: on a list the script
    sets every time's title to the exact local time anyway (``app.js``), and
    without script the cell already shows the instant to the minute.
    """
    if value is None:
        return "&mdash;"
    utc = value.astimezone(datetime.UTC)
    iso = utc.isoformat(timespec="seconds").replace("+00:00", "Z")
    return f'<time datetime="{iso}">{utc.strftime("%Y-%m-%d %H:%M UTC")}</time>'


def _person(field: str) -> str:
    return f"{{_chips.get(i.{field}) or _chip(results, _chips, i.{field})}}"


#: The f-string fragment of each built-in column's cell (``i`` is the issue).
#: Their labels (shown before each value when the table is drawn as cards on
#: a narrow screen) are in ``app.css``, one rule per column, rather than in a
#: ``data-label`` on each of a page's 350 cells; a custom field's column,
#: whose label is the field's name, keeps it.
_FRAGMENTS: dict[str, str] = {
    "id": '<td class="col-id"><a href="/issues/{i.id}" class="open-link">{i.id}</a></td>',
    "title": '<td class="col-title"><a href="/issues/{i.id}">{_escape(i.title)}</a></td>',
    "priority": '<td class="col-priority">{_P.get(i.priority) or _level_pill(i.priority)}</td>',
    "severity": '<td class="col-severity">{_S.get(i.severity) or _level_pill(i.severity)}</td>',
    "type": '<td class="col-type">{_T.get(i.type) or _escape(_type_label(i.type))}</td>',
    "status": '<td class="col-status">{_ST.get(i.status) or _status_pill(i.status)}</td>',
    "assignee": f'<td class="col-assignee">{_person("assignee")}</td>',
    "reporter": f'<td class="col-reporter">{_person("reporter")}</td>',
    "verifier": f'<td class="col-verifier">{_person("verifier")}</td>',
    "component": (
        '<td class="col-component"><a href="/components/{i.component_id}">'
        "{_escape(_components.get(i.component_id, i.component_id))}</a></td>"
    ),
    "created": '<td class="col-created">{_time(i.created_at)}</td>',
    "modified": '<td class="col-modified">{_time(i.modified_at)}</td>',
}
#: The row's check box, named by the issue's number and title: a screen
#: reader tabbing through a list's boxes says which issue each selects, not
#: only a number. The escaped title is kept in ``_t`` for the title cell
#: after it (the cells are evaluated left to right): escaped once a row.
_SELECT = (
    '<td class="sel"><input type="checkbox" name="issue" value="{i.id}:{i.version}" '
    'aria-label="Select issue {i.id}{(": " + _t) if (_t := _escape(i.title)) else ""}" '
    'form="bulk"></td>'
)
#: The title cell of a selectable table: the title the check box escaped.
_TITLE_AFTER_SELECT = '<td class="col-title"><a href="/issues/{i.id}">{_t}</a></td>'
#: What the compiled writers name, besides their arguments.
_NAMESPACE = {
    "_P": _PRIORITY_PILLS,
    "_S": _SEVERITY_PILLS,
    "_ST": _STATUS_PILLS,
    "_T": _TYPE_LABELS,
    "_level_pill": level_pill,
    "_status_pill": status_pill,
    "_type_label": type_label,
    "_escape": escape_text,
    "_chip": _chip,
    "_time": _time,
}


@functools.lru_cache(maxsize=256)
def _row_writer(columns: tuple[str, ...], selectable: bool) -> _Rows:
    """The writer of the rows in ``columns``: one f-string per row, made once per column set.

    A column that is not built in is written by the ``others`` cell of its
    position among such columns; its name is not in the source.
    """
    cells = [_SELECT] if selectable else []
    others = 0
    for column in columns:
        if selectable and column == "title":
            fragment: str | None = _TITLE_AFTER_SELECT
        else:
            fragment = _FRAGMENTS.get(column)
        if fragment is None:
            fragment = f"{{_others[{others}](results, i, _chips)}}"
            others += 1
        cells.append(fragment)
    row = repr("".join(cells))
    source = (
        "def rows(results, issues, _chips, _others):\n"
        "    _components = results.components\n"
        "    return [\n"
        '        f\'<tr class="row" data-href="/issues/{i.id}">\'\n'
        f"        f{row}\n"
        "        '</tr>\\n'\n"
        "        for i in issues\n"
        "    ]\n"
    )
    namespace: dict[str, Any] = dict(_NAMESPACE)
    exec(source, namespace)  # made of the constants above, never of the request
    writer: _Rows = namespace["rows"]
    return writer


def _other_cell(results: SearchResults, column: str) -> _Cell:
    """The cell of a column that is not built in: a custom field's values, or nothing."""
    opening = (
        f'<td class="col-{escape_text(column)}" '
        f'data-label="{escape_text(results.column_label(column))}">'
    )
    if not column.startswith("customfield"):
        empty = f"{opening}</td>"
        return lambda results, issue, chips: empty

    def custom(results: SearchResults, issue: v1.Issue, chips: dict[str, str]) -> str:
        return f"{opening}{escape_text(', '.join(results.custom_values(issue, column)))}</td>"

    return custom


def result_rows(results: SearchResults, columns: Sequence[str], *, selectable: bool) -> Markup:
    """The ``<tr>`` of every issue in ``results``, in ``columns`` (a check box first if asked).

    Each column's header label is worked out once per table (a custom
    field's scans the page's issues), not once per cell.
    """
    others = [_other_cell(results, c) for c in columns if c not in _FRAGMENTS]
    write = _row_writer(tuple(columns), selectable)
    rows = write(results, results.issues, {}, others)
    if selectable and results.selected:
        rows = [
            _ticked(row, issue, results.selected)
            for row, issue in zip(rows, results.issues, strict=True)
        ]
    return Markup("".join(rows))


def _ticked(row: str, issue: v1.Issue, selected: frozenset[str]) -> str:
    """``row`` with its check box ticked when ``selected`` names the issue at the version shown."""
    value = f'value="{issue.id}:{issue.version}" '
    if f"{issue.id}:{issue.version}" not in selected:
        return row
    return row.replace(value, f"{value}checked ", 1)


__all__ = ["result_rows"]
