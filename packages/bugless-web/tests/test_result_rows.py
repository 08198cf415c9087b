"""The flat row of a result table: labels worked out once per table, cells the same."""

from __future__ import annotations

from dataclasses import dataclass, field

from web_support import SESSION_KEY

from bugless_core.clients import ServiceAddress
from bugless_proto import v1
from bugless_web.frontend import Frontend
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
    # Once for the header row and once for the cells' labels: not once per cell.
    assert sorted(results.labels_asked) == sorted(COLUMNS * 2)
    assert html.count('data-label="Team"') == 40
    assert html.count('<span class="pill status-assigned open">') == 40
    assert html.count('<span class="pill level level-p1">') == 40
    assert html.count('<span class="pill level level-s2">') == 40
    assert ">t40</td>" in html.replace("\n", "").replace(" ", "")
