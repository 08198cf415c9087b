"""CSV export of a search: every page, streamed, up to a cap.

``GET /search.csv?q=…&columns=…`` answers the same query as the search page
(the same parser, the same visibility: the Model filters by the caller) with
one row per issue in the chosen columns, read in pages of
:data:`EXPORT_PAGE_SIZE` and written as each page arrives, so a large export
neither waits for the whole result nor holds it in memory. At most
``--export-row-cap`` rows are written (``WebSettings.export_row_cap``, 10,000
by default); more issues than that are better read through the API. People
appear by username, components by path, times in ISO 8601 UTC. A cell that
a spreadsheet would run as a formula (starting ``=``, ``+``, ``-``, ``@``,
tab or carriage return) is prefixed with ``'``.
"""

from __future__ import annotations

import csv
import datetime
import io
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from litestar import Request, Response, get
from litestar.response import Stream

from bugless_core.limits import MAX_PAGE_SIZE
from bugless_proto import v1
from bugless_web.backends import Backends, Viewer
from bugless_web.display import level_label, status_label, type_label
from bugless_web.frontend import frontend_of, render, viewer_of
from bugless_web.result_columns import columns_of
from bugless_web.searching import SearchResults, name_custom_columns, run_search
from bugless_web.timezones import CallerZone, zone_of

#: Issues read from the Model per call.
EXPORT_PAGE_SIZE = min(500, MAX_PAGE_SIZE)
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: str) -> str:
    """``value`` safe to open in a spreadsheet (no formula runs)."""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def csv_row(
    issue: v1.Issue,
    columns: Sequence[str],
    users: Mapping[str, v1.User],
    components: Mapping[int, str],
) -> list[str]:
    """One issue's cells in ``columns``."""

    def person(user_id: str) -> str:
        user = users.get(user_id)
        return user.username if user is not None else ""

    def when(value: Any) -> str:
        return value.isoformat(timespec="seconds").replace("+00:00", "Z") if value else ""

    cells = {
        "id": str(issue.id),
        "priority": level_label(issue.priority),
        "severity": level_label(issue.severity),
        "type": type_label(issue.type),
        "title": issue.title,
        "status": status_label(issue.status),
        "assignee": person(issue.assignee),
        "reporter": person(issue.reporter),
        "verifier": person(issue.verifier),
        "component": components.get(issue.component_id, str(issue.component_id)),
        "created": when(issue.created_at),
        "modified": when(issue.modified_at),
    }
    for value in issue.custom_fields:
        shown = value.values
        if value.type is v1.CustomFieldType.USER:
            shown = [person(u) or u for u in value.values]
        cells[f"customfield{value.field_id}"] = ", ".join(shown)
    return [csv_cell(cells.get(c, "")) for c in columns]


def _line(cells: Sequence[str]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(cells)
    return out.getvalue().encode()


async def _rows(
    backends: Backends,
    viewer: Viewer,
    query: str,
    columns: Sequence[str],
    first: SearchResults,
    *,
    cap: int,
    zone: CallerZone,
    today: datetime.date,
) -> AsyncIterator[bytes]:
    yield _line(
        [c.title() if c in ("priority", "severity") else first.column_label(c) for c in columns]
    )
    results, written = first, 0
    while True:
        for issue in results.issues[: cap - written]:
            yield _line(csv_row(issue, columns, results.users, results.components))
            written += 1
        if written >= cap or not results.next_page_token:
            return
        # The same day as the first page: a page token belongs to one query.
        results = await run_search(
            backends,
            viewer,
            query,
            zone=zone,
            today=today,
            page_token=results.next_page_token,
            page_size=EXPORT_PAGE_SIZE,
            columns=columns,
        )


@get("/search.csv")
async def export_csv(request: Request[Any, Any, Any]) -> Response[Any]:
    """The search ``q`` as CSV in the chosen columns (see the module docstring)."""
    frontend = frontend_of(request)
    # A download: a drain lets it finish (--drain-transfer-seconds).
    frontend.drain.requests.count_as_transfer()
    viewer = await viewer_of(request)
    backends = frontend.backends
    query = request.query_params.get("q", "")
    columns = columns_of(request)
    zone = zone_of(request)
    today = datetime.datetime.now(zone.tz).date()
    first = await run_search(
        backends,
        viewer,
        query,
        zone=zone,
        today=today,
        page_size=EXPORT_PAGE_SIZE,
        columns=columns,
    )
    if first.error is not None:
        # Before any row: a bad query is the search page's 400 with the position.
        return render(
            request,
            "error.html",
            {
                "status": 400,
                "error_title": first.error.heading,
                "message": first.error.message,
            },
            status_code=400,
            viewer=viewer,
        )
    await name_custom_columns(backends, viewer, first, columns)
    return Stream(
        _rows(
            backends,
            viewer,
            query,
            columns,
            first,
            cap=frontend.settings.export_row_cap,
            zone=zone,
            today=today,
        ),
        # Litestar adds "; charset=utf-8" to a text/ type (given here, it was sent twice).
        media_type="text/csv",
        headers={
            "content-disposition": 'attachment; filename="bugless-issues.csv"',
            "cache-control": "private, no-store",
        },
    )


ROUTES = [export_csv]
