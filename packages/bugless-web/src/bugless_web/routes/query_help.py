"""The query language's help page: its grammar, every field, the sort keys.

Built from :mod:`bugless_core.search.reference`, which reads the parser's own
tables, and each example is explained by the same
:func:`~bugless_core.search.explain` as "How this query was read" on the
search page, in the viewer's time zone: the page says what the parser does,
not what someone once wrote it does. Each example links to its search.
"""

from __future__ import annotations

import functools
from typing import Any

from litestar import Request, Response, get

from bugless_core.search import explain, parse_query
from bugless_core.search.reference import SYNTAX, field_reference, sort_keys
from bugless_web.frontend import render, viewer_of
from bugless_web.timezones import zone_of


@functools.lru_cache(maxsize=64)
def _explained(example: str, zone_name: str) -> str:
    return explain(parse_query(example), zone_name=zone_name)


@get("/search/help")
async def query_help(request: Request[Any, Any, Any]) -> Response[str]:
    """Every term, operator and sort key of the search language, with examples."""
    viewer = await viewer_of(request)
    zone = zone_of(request).name
    return render(
        request,
        "query_help.html",
        {
            "syntax": SYNTAX,
            "fields": field_reference(),
            "sort_keys": sort_keys(),
            "explained": functools.partial(_explained, zone_name=zone),
        },
        viewer=viewer,
    )


ROUTES = [query_help]
