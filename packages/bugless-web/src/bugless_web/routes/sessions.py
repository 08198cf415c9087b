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

How far behind "Last used" may be comes from the settings that make it so,
never a figure written into the page: the Authenticator's granularity of
recording a use (``ListSessionsResponse.last_used_granularity_seconds``,
and its certificate sessions' own) plus this replica's
``--token-cache-seconds``, for which it asks the Authenticator nothing. The
folded line counts every service's session (``total_count``), not the page's.
An Authenticator that predates those fields answers 0: the page then says
"+" after a full page and names no figure.
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
            "services_total": services.total_count,
            "kind_labels": KIND_LABELS,
            "cache_seconds": frontend.settings.token_cache_seconds,
            "last_used": last_used_lag(own, frontend.settings.token_cache_seconds),
        },
        viewer=viewer,
    )


def about(seconds: float) -> str:
    """A duration as the page says it: seconds under two minutes, else half-minutes."""
    if seconds < 120:
        whole = round(seconds)
        return f"{whole} second{'' if whole == 1 else 's'}"
    halves = round(seconds / 30)
    return f"{halves // 2}{'½' if halves % 2 else ''} minutes"


def last_used_lag(listing: v1.ListSessionsResponse, cache_seconds: float) -> dict[str, str]:
    """What the small print says of "Last used": how far behind it may be, and why.

    Empty when the Authenticator did not say its granularity (one older than
    the field): the page then names no figure rather than a made-up one.
    """
    granularity = listing.last_used_granularity_seconds
    if granularity <= 0:
        return {}
    lag = {"within": about(granularity + cache_seconds), "granularity": about(granularity)}
    if cache_seconds > 0:
        lag["cache"] = about(cache_seconds)
    if listing.certificate_last_used_granularity_seconds > 0:
        lag["certificate"] = about(listing.certificate_last_used_granularity_seconds)
    return lag


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
