"""A person's page: who they are (from the Authenticator) and their open issues."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.params import FromPath

from bugless_core.errors import NotFound
from bugless_core.usernames import username_key
from bugless_web.frontend import frontend_of, render, viewer_of
from bugless_web.result_columns import DEFAULT_COLUMNS
from bugless_web.searching import run_search
from bugless_web.timezones import zone_of


@get("/users/{username:str}")
async def user_page(request: Request[Any, Any, Any], username: FromPath[str]) -> Response[str]:
    """The open issues assigned to ``username`` (any case or normal form of it)."""
    viewer = await viewer_of(request)
    backends = frontend_of(request).backends
    found = await backends.users_by_name([username])
    # Keyed as the Authenticator spells the name: "@Bob" and "@o\u0308laf"
    # link here as written.
    key = username_key(username)
    user = next((u for name, u in found.items() if username_key(name) == key), None)
    if user is None:
        msg = f"no user named {username!r}"
        raise NotFound(msg)
    query = f"assignee:{username} is:open"
    results = await run_search(
        backends, viewer, query, zone=zone_of(request), columns=DEFAULT_COLUMNS
    )
    return render(
        request,
        "user.html",
        {"user": user, "results": results, "columns": DEFAULT_COLUMNS, "search_query": query},
        viewer=viewer,
    )


ROUTES = [user_page]
