"""The sessions page: where a person sees where they are signed in, and ends sessions.

``/settings/sessions`` lists the signed-in person's live sessions as the
Authenticator recorded them (``ListSessions``: how each was made, from which
address, when, when last used), this one marked; each other one has a
"Sign out" button (``EndSession``), and "sign out everywhere" ends them all.
The sessions of services acting for the person (each notifier mail makes one)
are folded into one line, "Services acting for you: N, latest at ...", that
opens (``<details>``, no script needed) to their rows, each endable. The two
are two listings (``ListSessions`` by kind, each paged on its own:
``?page=`` the person's, ``?services_page=`` the services'), so a busy
notifier's sessions never push the person's own sign-ins to a later page.

An ended session is refused by every Authenticator replica at once; a web
replica that validated its token a moment before keeps accepting it for at
most ``--token-cache-seconds`` (it cannot be told: it holds tokens, and this
page knows the session only by id), which the page says.
"""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Request, Response, get, post

from bugless_core.clients import call
from bugless_core.errors import NotFound
from bugless_proto import v1
from bugless_web.frontend import frontend_of, redirect, render, session_of, viewer_of

SESSIONS_PAGE = "/settings/sessions"
#: Sessions shown a page.
PAGE_SIZE = 50
#: How a session was made, as the page says it (``Session.kind``).
KIND_LABELS = {
    "password": "Password",
    "oidc": "Single sign-on",
    "certificate": "Client certificate (API)",
    "service": "A service acting for you",
}


@get(SESSIONS_PAGE)
async def sessions_page(request: Request[Any, Any, Any]) -> Response[str]:
    """The person's live sessions, newest first, a page at a time (theirs and services' apart)."""
    viewer = await viewer_of(request)
    frontend = frontend_of(request)
    page_token = request.query_params.get("page", "")
    services_page = request.query_params.get("services_page", "")

    async def listing(kind: str, token: str) -> v1.ListSessionsResponse:
        return await call(
            frontend.backends.auth.list_sessions,
            v1.ListSessionsRequest(
                token=viewer.token,
                page=v1.PageRequest(page_size=PAGE_SIZE, page_token=token),
                kind=kind,
            ),
        )

    # A busy notifier makes a session a mail, each ~5 minutes long: one folded
    # line, opened to see or end them, and never in the way of the person's own.
    own, services = await asyncio.gather(
        listing("people", page_token), listing("services", services_page)
    )
    return render(
        request,
        "sessions.html",
        {
            "title": "Sessions",
            "sessions": own.sessions,
            "services": services.sessions,
            "page_token": page_token,
            "next_page_token": own.next_page_token,
            "first_page": not page_token,
            "services_page": services_page,
            "services_next_page": services.next_page_token,
            "kind_labels": KIND_LABELS,
            "cache_seconds": frontend.settings.token_cache_seconds,
        },
        viewer=viewer,
    )


@post(f"{SESSIONS_PAGE}/end")
async def end_session(request: Request[Any, Any, Any]) -> Response[Any]:
    """End one of the person's sessions (by the id the page lists)."""
    viewer = await viewer_of(request)
    form = await request.form()
    backends = frontend_of(request).backends
    session = session_of(request)
    try:
        reply = await call(
            backends.auth.end_session,
            v1.EndSessionRequest(token=viewer.token, session_id=str(form.get("session_id", ""))),
        )
    except NotFound:
        # Ended meanwhile (signed out there, a second click, expired): what was asked is done.
        session.update(notice="That session had already ended.")
        return redirect(SESSIONS_PAGE)
    if reply.session is not None and reply.session.current:
        backends.forget_token(viewer.token)
        session.sign_out()
        session.update(notice="You are signed out.")
        return redirect("/signin")
    seconds = frontend_of(request).settings.token_cache_seconds
    session.update(
        notice="Session signed out: its next request is refused"
        + (f" (within {seconds:g} s on a server that has just seen it)." if seconds else ".")
    )
    return redirect(SESSIONS_PAGE)


ROUTES = [sessions_page, end_session]
