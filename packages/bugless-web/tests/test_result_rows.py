"""The flat row of a result table: labels worked out once per table, cells the same."""

from __future__ import annotations

import datetime
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import escape
from web_support import SESSION_KEY

import bugless_web
from bugless_core.clients import ServiceAddress
from bugless_core.issue_labels import type_label
from bugless_core.list_columns import COLUMN_LABELS
from bugless_proto import v1
from bugless_web import display
from bugless_web.frontend import Frontend
from bugless_web.result_rows import result_rows
from bugless_web.searching import SearchResults
from bugless_web.settings import WebSettings

COLUMNS = ["id", "title", "status", "priority", "severity", "customfield7"]


@dataclass
class CountingResults(SearchResults):
    """Counts the header-label look-ups (a custom column's scans every issue)."""

    labels_asked: list[str] = field(default_factory=list)

    def column_label(self, column: str) -> str:
        self.labels_asked.append(column)
        return super().column_label(column)


def _render(results: SearchResults) -> str:
    address = ServiceAddress("127.0.0.1", 1)
    settings = WebSettings(
        model=address, auth=address, session_keys=(SESSION_KEY,), insecure_local=True
    )
    page = Frontend(settings).templates.from_string(
        '{% from "_macros.html" import results_table with context %}'
        "{{ results_table(results, columns) }}"
    )
    return page.render(results=results, columns=COLUMNS, csrf_token="t")


def test_each_label_is_worked_out_once_per_table_not_per_cell() -> None:
    issues = [
        v1.Issue(
            id=i,
            title=f"Issue {i}",
            status=v1.Status.ASSIGNED,
            priority=v1.Priority.P1,
            severity=v1.Severity.S2,
            custom_fields=[v1.CustomFieldValue(field_id=7, name="Team", values=[f"t{i}"])],
        )
        for i in range(1, 41)
    ]
    results = CountingResults(query="is:open", issues=issues)
    html = _render(results)
    # Once for the header row, and once more for a custom column's cells (a
    # built-in column's label is in the stylesheet): not once per cell.
    assert sorted(results.labels_asked) == sorted([*COLUMNS, "customfield7"])
    assert html.count('data-label="Team"') == 40
    assert html.count('<span class="pill status-assigned open">') == 40
    assert html.count('<span class="pill level level-p1">') == 40
    assert html.count('<span class="pill level level-s2">') == 40
    assert ">t40</td>" in html.replace("\n", "").replace(" ", "")


def test_built_in_labels_come_from_the_stylesheet_and_custom_ones_from_the_cell() -> None:
    # A narrow screen draws each row as a card, every value after its column's
    # label: a built-in column's from one CSS rule (not 50 data-label
    # attributes), a custom field's from its cell.
    when = datetime.datetime(2026, 12, 4, 19, 0, tzinfo=datetime.UTC)
    issue = v1.Issue(
        id=7,
        title="T",
        modified_at=when,
        custom_fields=[v1.CustomFieldValue(field_id=7, name="Team", values=["core"])],
    )
    columns = [*COLUMN_LABELS, "customfield7"]
    html = str(result_rows(SearchResults(query="", issues=[issue]), columns, selectable=True))
    assert "data-label" not in html.replace('data-label="Team"', "")
    assert html.count('data-label="Team"') == 1
    for column in COLUMN_LABELS:
        assert f'<td class="col-{column}">' in html
    # The row's time keeps its machine-readable instant; its tooltip is the script's.
    assert '<time datetime="2026-12-04T19:00:00Z">2026-12-04 19:00 UTC</time>' in html
    css = (Path(bugless_web.__file__).parent / "static" / "app.css").read_text()
    shown = dict(
        re.findall(r'table\.results td\.col-([a-z]+)::before \{ content: "([^"]*)"; \}', css)
    )
    assert shown == dict(COLUMN_LABELS)


def _reference_rows(results: SearchResults, columns: list[str], selectable: bool) -> str:
    """The rows as plainly as they can be written: a cell at a time, through ``display``."""
    rows = []
    for issue in results.issues:
        cells = []
        if selectable:
            named = f"{issue.id}: {escape(issue.title)}" if issue.title else str(issue.id)
            cells.append(
                f'<td class="sel"><input type="checkbox" name="issue" '
                f'value="{issue.id}:{issue.version}" aria-label="Select issue {named}" '
                'form="bulk"></td>'
            )
        for column in columns:
            when = {"created": issue.created_at, "modified": issue.modified_at}
            value = {
                "id": f'<a href="/issues/{issue.id}" class="open-link">{issue.id}</a>',
                "title": f'<a href="/issues/{issue.id}">{escape(issue.title)}</a>',
                "priority": display.level_pill(issue.priority),
                "severity": display.level_pill(issue.severity),
                "type": escape(type_label(issue.type)),
                "status": display.status_pill(issue.status),
                "assignee": display.user_chip(results.users, issue.assignee),
                "reporter": display.user_chip(results.users, issue.reporter),
                "verifier": display.user_chip(results.users, issue.verifier),
                "component": f'<a href="/components/{issue.component_id}">'
                f"{escape(results.components.get(issue.component_id, issue.component_id))}</a>",
            }
            if column in when:
                shown = str(display.timestamp(when[column])).replace(' title="', ' x="')
                value[column] = re.sub(r' x="[^"]*"', "", shown)
            if column in value:
                cells.append(f'<td class="col-{column}">{value[column]}</td>')
            else:
                label = escape(results.column_label(column))
                custom = escape(", ".join(results.custom_values(issue, column)))
                cells.append(f'<td class="col-{column}" data-label="{label}">{custom}</td>')
        rows.append(f'<tr class="row" data-href="/issues/{issue.id}">{"".join(cells)}</tr>\n')
    return "".join(rows)


@settings(max_examples=60, deadline=None)
@given(
    columns=st.lists(
        st.sampled_from([*COLUMN_LABELS, "customfield3", "customfield4"]), min_size=1, unique=True
    ),
    selectable=st.booleans(),
    seed=st.integers(0, 2**32),
)
def test_the_compiled_row_writer_writes_what_cell_by_cell_writing_does(
    columns: list[str], selectable: bool, seed: int
) -> None:
    rnd = random.Random(seed)
    when = datetime.datetime(2026, 12, 4, 19, 7, 31, tzinfo=datetime.UTC)
    users = {"u1": v1.User(user_id="u1", username="ann", display_name="Ann <A&B>")}
    issues = [
        v1.Issue(
            id=rnd.randint(1, 10**6),
            version=rnd.randint(1, 9),
            title=rnd.choice(["", "plain", "a<b>&'\"", "Ünïcode"]),
            priority=rnd.choice(list(v1.Priority)),
            severity=rnd.choice(list(v1.Severity)),
            type=rnd.choice(list(v1.IssueType)),
            status=rnd.choice(list(v1.Status)),
            assignee=rnd.choice(["", "u1", "gone"]),
            reporter=rnd.choice(["", "u1"]),
            verifier=rnd.choice(["", "gone"]),
            component_id=rnd.choice([0, 5, 6]),
            created_at=rnd.choice([None, when]),
            modified_at=when + datetime.timedelta(minutes=rnd.randint(0, 10**5)),
            custom_fields=[v1.CustomFieldValue(field_id=3, name="T<m", values=["x", "y&z"])][
                : rnd.randint(0, 1)
            ],
        )
        for _ in range(rnd.randint(0, 6))
    ]
    results = SearchResults(query="", issues=issues, users=users, components={5: "A>B"})
    written = str(result_rows(results, columns, selectable=selectable))
    assert written == _reference_rows(results, columns, selectable)


def test_a_row_check_box_is_named_by_its_issue_number_and_escaped_title() -> None:
    # A screen reader tabbing through a list's boxes says which issue each
    # one selects: "Select issue 7" alone made every box a bare number.
    issues = [
        v1.Issue(id=7, version=2, title='Disk "full" <b>again</b> & more'),
        v1.Issue(id=8, version=1, title=""),
    ]
    html = str(result_rows(SearchResults(query="", issues=issues), ["id"], selectable=True))
    assert (
        'aria-label="Select issue 7: Disk &#34;full&#34; &lt;b&gt;again&lt;/b&gt; &amp; more"'
        in html
    )
    assert 'aria-label="Select issue 8"' in html
