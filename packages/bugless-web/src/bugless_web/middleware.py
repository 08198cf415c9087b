"""ASGI middleware: the session cookie, security headers, and drain steering.

They wrap the whole application (error pages included), which is why they are
ASGI middleware rather than route hooks: a 404 page gets the same
Content-Security-Policy as the issue page, and a steered page load never
reaches a route.
"""

from __future__ import annotations

import asyncio
import json
from http.cookies import SimpleCookie
from typing import TYPE_CHECKING, Any, cast

from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType

from bugless_core.clients import acting_as
from bugless_web.drain import CUT_BY_DRAIN
from bugless_web.frontend import SESSION_KEY
from bugless_web.http_protocol import ABORT_CONNECTION
from bugless_web.session import Session
from bugless_web.transfers import ResponseCut

if TYPE_CHECKING:
    from collections.abc import Callable

    from litestar.types import (
        ASGIApp,
        HTTPResponseBodyEvent,
        HTTPResponseStartEvent,
        Message,
        Receive,
        Scope,
        Send,
    )

    from bugless_web.frontend import Frontend

#: No inline script or style anywhere; forms post only to this site; the page
#: cannot be framed (clickjacking) and ``<base>`` cannot be injected.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ]
)
_SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
    "cross-origin-opener-policy": "same-origin",
}
#: Pages (signed-in or not) show people's data and carry CSRF tokens: no
#: browser or proxy may keep a copy. Versioned static assets set their own.
NO_STORE = "no-store"
#: Paths that are never steered while draining (probes and assets of pages
#: already being shown).
_NOT_STEERED = ("/healthz", "/readyz", "/static/")


def _frontend(scope: Scope) -> Frontend:
    frontend: Frontend = scope["litestar_app"].state["frontend"]
    return frontend


def _cookie_value(scope: Scope, name: str) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:
                continue
            if name in jar:
                return jar[name].value
    return None


def session_middleware(app: ASGIApp) -> ASGIApp:
    """Open the session cookie into the scope; re-seal it when a route changed it."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        frontend = _frontend(scope)
        opened = frontend.codec.open(_cookie_value(scope, frontend.cookie_name))
        state: dict[str, Any] = scope.setdefault("state", {})
        state[SESSION_KEY] = opened if opened is not None else Session(fresh=True)
        # A fresh session is saved only once a page renders (its forms carry
        # the CSRF token) or a route changes it: probes and assets get no cookie.

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                session: Session = state[SESSION_KEY]
                if session.modified and not session.leave_cookie:
                    headers = MutableScopeHeaders.from_message(message)
                    headers.add("set-cookie", _set_cookie(frontend, session))
            await send(message)

        # Model calls carry the viewer's identity assertion, set once the
        # request's viewer is known (frontend.optional_viewer), and no other.
        with acting_as(None):
            await app(scope, receive, send_with_cookie)

    return middleware


def _set_cookie(frontend: Frontend, session: Session) -> str:
    parts = [
        f"{frontend.cookie_name}={frontend.codec.seal(session)}",
        "Path=/",
        f"Max-Age={frontend.settings.session_max_age_seconds}",
        "HttpOnly",
        "SameSite=Lax",
    ]
    if not frontend.settings.dev:
        parts.append("Secure")
    return "; ".join(parts)


def security_headers_middleware(app: ASGIApp) -> ASGIApp:
    """Add CSP, nosniff, frame and referrer policies (and HSTS outside ``--dev``).

    Every response without its own ``Cache-Control`` gets ``no-store``:
    signed-in pages, error pages and redirects alike, so a shared computer's
    back button or a caching proxy never shows one person's page to another.
    """

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        settings = _frontend(scope).settings
        dev = settings.dev
        security = _SECURITY_HEADERS
        if settings.download_url:
            # Thumbnails come from the download host.
            origin = settings.download_url.split("/", 3)[:3]
            security = {
                **_SECURITY_HEADERS,
                "content-security-policy": CONTENT_SECURITY_POLICY.replace(
                    "img-src 'self' data:", f"img-src 'self' data: {'/'.join(origin)}"
                ),
            }

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableScopeHeaders.from_message(message)
                for name, value in security.items():
                    if name not in headers:
                        headers[name] = value
                if "cache-control" not in headers:
                    headers["cache-control"] = NO_STORE
                if not dev:
                    headers["strict-transport-security"] = "max-age=31536000"
            await send(message)

        await app(scope, receive, send_with_headers)

    return middleware


def drain_middleware(app: ASGIApp) -> ASGIApp:
    """Track each request for the drain (:mod:`bugless_web.drain`), and steer while draining.

    While draining: a new page load (GET/HEAD) is sent to ``--steer-to``
    with a 303, and every response closes its connection. A request the
    drain cuts (:meth:`~bugless_web.drain.InFlight.cut`) answers 503 if it
    had not answered yet, or ends its body short.
    """

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        frontend = _frontend(scope)
        drain = frontend.drain
        steer_to = frontend.settings.steer_to
        path: str = scope["path"]
        if (
            drain.draining
            and steer_to
            and cast("str", scope.get("method", "")) in ("GET", "HEAD")
            and not path.startswith(_NOT_STEERED)
        ):
            query = scope.get("query_string", b"").decode("latin-1")
            target = steer_to.rstrip("/") + path + (f"?{query}" if query else "")
            await _answer(
                send,
                303,
                [
                    (b"location", target.encode("latin-1", "replace")),
                    (b"content-length", b"0"),
                    (b"connection", b"close"),
                ],
                b"",
            )
            return
        started = False

        async def send_while_draining(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if drain.draining:
                    MutableScopeHeaders.from_message(message)["connection"] = "close"
            await send(message)

        requests = drain.requests
        task = requests.begin()
        try:
            await app(scope, receive, send_while_draining)
        except asyncio.CancelledError:
            if not requests.was_cut(task):
                raise
            if task is not None:
                task.uncancel()
            if started:
                # The body can only end short: the connection is aborted
                # (what is buffered for a slow reader is dropped), and
                # raising has the server close it otherwise; its log
                # skips a cut.
                abort = cast("Callable[[], None] | None", scope.get(ABORT_CONNECTION))
                if abort is not None:
                    abort()
                raise ResponseCut(f"{scope['path']}: {CUT_BY_DRAIN}") from None
            await _cut_answer(scope, send)
        finally:
            requests.end(task)

    return middleware


#: What a request cut by the drain before it answered is told: true of a
#: request that reached its bound and of one a second SIGTERM cut sooner.
CUT_MESSAGE = (
    "this server shut down before the request finished (it was stopping, and stopped "
    "waiting for the request); nothing more will come from it: try again"
)


async def _cut_answer(scope: Scope, send: Send) -> None:
    """Answer 503 for a request the drain cut: JSON for a script, text for a page."""
    accept = b""
    for key, value in scope.get("headers", ()):
        if key == b"accept":
            accept = value
    if b"text/html" in accept:
        kind, body = b"text/plain; charset=utf-8", CUT_MESSAGE.encode()
    else:
        kind, body = b"application/json", json.dumps({"error": CUT_MESSAGE}).encode()
    headers = [
        (b"content-type", kind),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await _answer(send, 503, headers, body)


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    """Send a whole response (``no-store``, like every answer of a drain)."""
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": [*headers, (b"cache-control", b"no-store")],
    }
    message: HTTPResponseBodyEvent = {
        "type": "http.response.body",
        "body": body,
        "more_body": False,
    }
    await send(start)
    await send(message)
