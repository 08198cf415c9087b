"""The application factory: routes, the one error-to-page mapping, CSRF, middleware.

Errors reach people in one place, :func:`error_page`: a ``BuglessError`` is a
page with its ``http_status`` and its message (the message is written for
people); a backend that is down is a 503 page saying so; a service of an
older release than this web, or a Model backend without a capability the
page needs, is a 501 page with the reason (``MethodNotServed``,
``Unimplemented``); any other 5xx, and anything else, is a page with no
detail while the log gets the error.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from litestar import Litestar, Request, Response
from litestar.exceptions import HTTPException
from litestar.response import Redirect

from bugless_core import tracing
from bugless_core.errors import (
    BuglessError,
    InvalidArgument,
    MethodNotServed,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from bugless_web._compat_litestar import PlainLitestar
from bugless_web.backends import Viewer
from bugless_web.builds import BUILD_FIELD, BUILD_HEADER, RELOAD_HEADER, StaleBuild, compatible
from bugless_web.frontend import (
    CSRF_IN_STREAM,
    VIEWER_KEY,
    CsrfRejected,
    Frontend,
    SignInRequired,
    frontend_of,
    local_url,
    render,
    require_csrf,
    retry_after_header,
    session_of,
    signed_out,
)
from bugless_web.metrics import metrics_middleware
from bugless_web.middleware import drain_middleware, security_headers_middleware, session_middleware
from bugless_web.routes import (
    api_access,
    attachment_form,
    attachments,
    auth,
    comment_edits,
    component_admin,
    component_webhooks,
    components,
    custom_field_admin,
    dead_letters,
    dev_mail,
    export,
    following,
    home,
    hotlists,
    imported,
    issues,
    live,
    live_list,
    new_issue,
    new_issue_files,
    operations,
    preview,
    query_help,
    saved_searches,
    search,
    sessions,
    suggest,
    unsubscribe,
    users,
)
from bugless_web.settings import WebSettings
from bugless_web.transfers import only_cuts

if TYPE_CHECKING:
    from litestar.types import ASGIApp

_log = logging.getLogger("bugless.web")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Header a script sends the CSRF token in (drag-and-drop re-rank).
CSRF_HEADER = "x-csrf-token"
#: Form field every state-changing form carries.
CSRF_FIELD = "_csrf"


class _LoggedCuts(logging.Filter):
    """Drops the server's report of a :class:`~bugless_web.transfers.ResponseCut`.

    uvicorn logs whatever the app raises after a response started as
    "Exception in ASGI application", with a traceback; a cut body was logged
    already, in one line, where it happened (a stalled browser, a Model
    stream that broke), and raising it is only how the connection gets
    closed. Anything else raised keeps its record and traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return error is None or not only_cuts(error)


#: The one filter on the server's log (adding it again changes nothing).
_LOGGED_CUTS = _LoggedCuts()


async def check_csrf(request: Request[Any, Any, Any]) -> None:
    """Refuse a state-changing request without this session's CSRF token.

    A synchronizer token: the session cookie (sealed, HttpOnly) holds the
    secret, every form echoes it. A cross-site request can make the browser
    send the cookie but cannot read the page to learn the token. Browsers
    that say a request is cross-site (``Sec-Fetch-Site``) are refused outright.
    """
    if request.method in _SAFE_METHODS or request.url.path in api_access.CSRF_EXEMPT:
        return
    if request.url.path.startswith(unsubscribe.PATH_PREFIX):
        # A mail client's one-click POST: the signed token in the path is
        # the authority, and it comes with no session (routes/unsubscribe.py).
        return
    if request.headers.get("sec-fetch-site") == "cross-site":
        _refuse_forged(request)
        msg = "a form on another site tried to change something here; nothing was changed"
        raise CsrfRejected(msg)
    sent = request.headers.get(CSRF_HEADER)
    multipart = request.headers.get("content-type", "").startswith("multipart/form-data")
    if not sent and request.route_handler.opt.get(CSRF_IN_STREAM):
        # A streamed multipart form: reading it here would buffer the file;
        # the route checks the token, the body's first field, before acting.
        # Such a route takes a body of any size, so another kind of body is
        # refused unread rather than read whole to look for a token.
        if not multipart:
            msg = "content-type: this form is sent as multipart/form-data; nothing was changed"
            raise InvalidArgument(msg)
        return
    if not sent:
        form = await request.form()
        sent = str(form.get(CSRF_FIELD, ""))
    require_csrf(request, sent)


async def check_build(request: Request[Any, Any, Any]) -> None:
    """Refuse, changing nothing, a request from a page of an incompatible build.

    Script requests name their page's build in a header, event streams in a
    query parameter, forms in a hidden field (see :mod:`bugless_web.builds`).
    """
    ours = frontend_of(request).assets.build_id
    theirs = request.headers.get(BUILD_HEADER) or request.query_params.get(BUILD_FIELD)
    fields: list[tuple[str, str]] = []
    if not theirs and request.method not in _SAFE_METHODS:
        content_type = request.headers.get("content-type", "")
        # Multipart bodies (uploads) are streamed by their routes and carry the
        # header from script; only plain forms are read here.
        if content_type.startswith("application/x-www-form-urlencoded"):
            form = await request.form()
            theirs = str(form.get(BUILD_FIELD, "")) or None
            fields = [
                (name, value)
                for name, value in form.multi_items()
                if isinstance(value, str) and value.strip() and not name.startswith("_")
            ]
    if not compatible(theirs, ours):
        raise StaleBuild(str(theirs), ours, fields)


async def before_request(request: Request[Any, Any, Any]) -> None:
    """CSRF first (a forged request learns nothing), then the page's build."""
    await check_csrf(request)
    await check_build(request)


def _stale_build_response(request: Request[Any, Any, Any], exc: StaleBuild) -> Response[Any]:
    """Ask the page to reload: by header (script), by event (stream), or by a page (form)."""
    headers = {RELOAD_HEADER: "1", "x-bugless-build": exc.ours}
    if "text/event-stream" in request.headers.get("accept", ""):
        return Response(
            f"event: reload\ndata: {exc.ours}\n\n",
            media_type="text/event-stream",
            headers=headers,
        )
    if request.headers.get(BUILD_HEADER):
        return Response(
            "bugless was updated while this page was open; reload it (nothing was changed)\n",
            media_type="text/plain",
            status_code=409,
            headers=headers,
        )
    referer = urlsplit(request.headers.get("referer", ""))
    back = (referer.path or "/") + (f"?{referer.query}" if referer.query else "")
    page = render(
        request,
        "stale.html",
        # local_url: this site serves pages at ``//search`` too (leading
        # slashes collapse), and a link to ``//search`` leaves the site.
        {"fields": exc.fields, "back": local_url(back)},
        status_code=409,
    )
    page.headers.update(headers)
    return page


def _refuse_forged(request: Request[Any, Any, Any]) -> None:
    """Leave the browser's cookie exactly as it is on a refused request.

    A cross-site POST arrives without the cookie (SameSite=Lax), so the
    request's session is a fresh anonymous one; answering with it would
    overwrite the person's real cookie and sign them out from any site.
    """
    session_of(request).leave_cookie = True


def error_page(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """The one mapping from an exception to what the browser gets.

    ``bugless login``'s JSON endpoints get their JSON error instead
    (:func:`bugless_web.routes.api_access.json_error_of`).
    """
    if request.url.path in api_access.JSON_PATHS:
        return api_access.json_error_of(request, exc)
    if isinstance(exc, StaleBuild):
        return _stale_build_response(request, exc)
    if isinstance(exc, SignInRequired | Unauthenticated) and (
        isinstance(exc, SignInRequired) or _session_refused(request, exc)
    ):
        if request.method in _SAFE_METHODS and "text/event-stream" not in request.headers.get(
            "accept", ""
        ):
            path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            from urllib.parse import quote  # noqa: PLC0415

            return Redirect(f"/signin?next={quote(path, safe='/')}", status_code=303)
        status, title, message = 401, "Sign in needed", exc.message
    elif isinstance(exc, Unavailable):
        # Logged once per outage by the service's stub (bugless_web.retries), not per page.
        _log.debug("backend unavailable: %s", exc.message)
        status, title = 503, "Service unavailable"
        message = (
            "A service this page needs is not answering right now "
            f"({exc.message}). Nothing was changed; try again in a moment."
        )
    elif isinstance(exc, BuglessError):
        status = exc.http_status
        if status >= 500:
            _log.error("backend error: %s", exc.message)
        if isinstance(exc, MethodNotServed | Unimplemented):
            # Written for people (a service to upgrade, a capability this
            # deployment's backend lacks), and true until an operator acts:
            # shown, as the API passes it on to a bot.
            title, message = _TITLES[501], exc.message
        elif status >= 500:
            title, message = "Something went wrong", "The server could not finish this request."
        else:
            title, message = _TITLES.get(status, "Cannot do that"), exc.message
    elif isinstance(exc, HTTPException):
        status = exc.status_code
        title = _TITLES.get(status, "Cannot do that")
        message = exc.detail if status < 500 else "The server could not finish this request."
        message = _ROUTING_MESSAGES.get((status, message), message)
    else:
        _log.exception("unexpected error on %s %s", request.method, request.url.path)
        status, title = 500, "Something went wrong"
        message = "The server could not finish this request. The error was logged."
    headers = {"retry-after": retry_after_header(exc)} if status == 429 else {}
    back = _posted_from(request) if request.method == "POST" or status == 405 else None
    try:
        page = render(
            request,
            "error.html",
            {"status": status, "error_title": title, "message": message, "back": back},
            status_code=status,
        )
    except Exception:  # the page itself failed: never a traceback
        _log.exception("the error page failed to render")
        page = Response(
            f"{status} {title}: {message}\n", media_type="text/plain", status_code=status
        )
    page.headers.update(headers)
    return page


#: Pages whose forms post to a path below them: ``/issues/7/attachments``,
#: ``/components/3/acl``, ``/hotlists/2/items``.
_FORM_PAGE_PATH = re.compile(r"^/(issues|components|hotlists)/(\d{1,19})/")
_FORM_PAGE_NAMES = {"issues": "issue", "components": "component", "hotlists": "hotlist"}


def _posted_from(request: Request[Any, Any, Any]) -> tuple[str, str] | None:
    """The page a refused form was posted from, as (href, link text), when its path says.

    A form on an issue's, a component's or a hotlist's page (an attachment
    over the limit, an unknown user in an access list, an issue number that
    does not exist) leads back to that page, not only to the home page.
    """
    match = _FORM_PAGE_PATH.match(request.url.path)
    if match is None:
        return None
    kind, number = match.groups()
    return f"/{kind}/{number}", f"Back to {_FORM_PAGE_NAMES[kind]} {number}"


def _session_refused(request: Request[Any, Any, Any], exc: Exception) -> bool:
    """Whether a backend refused the signed-in viewer's identity (and sign them out).

    The web tier keeps a session's viewer for a few seconds; a session ended
    meanwhile (signed out on another replica, the person disabled) is refused
    by the Model when it checks the identity assertion. That is the person's
    sign-in ending, not an error of the page: the browser is signed out here
    (or the sign-in page would send it straight back) and, on a page load,
    sent to sign in again like any signed-out visitor. An UNAUTHENTICATED
    answer to someone not signed in (a refused OIDC callback, a wrong
    password) keeps its page and its reason.
    """
    if not isinstance(exc, Unauthenticated):
        return False
    state = request.scope.get("state", {})
    if not isinstance(state.get(VIEWER_KEY), Viewer):
        return False
    signed_out(session_of(request), exc)
    return True


#: What the router's bare refusals ("Not Found" for an address no route
#: takes, "Method Not Allowed" for a form's address opened as a page, say by
#: reloading it from the address bar) tell a person instead.
_ROUTING_MESSAGES = {
    (404, "Not Found"): (
        "There is no page at this address. Check the link for a typing mistake, "
        "or search for the issue from the box above."
    ),
    (405, "Method Not Allowed"): (
        "This address takes a form's submission; it is not a page to open. "
        "Go back to the page the form was on and send it from there."
    ),
}
_TITLES = {
    400: "That did not work",
    401: "Sign in needed",
    403: "Not allowed",
    404: "Not found",
    405: "Not a page",  # a form's address opened as a page
    408: "Took too long",  # a stalled upload (bugless_web.transfers.UploadStalled)
    409: "Conflict",
    410: "Gone",  # a deleted attachment (ContentGone)
    413: "Too large",  # over a size limit (an upload, a JSON body)
    429: "Too many attempts",
    501: "Not available",  # a service of an older release, a backend without a capability
}


def create_app(settings: WebSettings) -> Litestar:
    """Build the ASGI application of one replica.

    The gRPC clients are opened on start-up rather than here: grpclib binds
    a channel to the event loop it was made on, which is the serving loop
    only once the server runs.
    """
    frontend = Frontend(settings)
    # uvicorn's logger for what the app raises (log_config=None: it only propagates).
    logging.getLogger("uvicorn.error").addFilter(_LOGGED_CUTS)

    async def open_backends() -> None:
        frontend.start()
        # Before uvicorn listens (and so before the worker says it serves):
        # /readyz's first probe then finds the backends' connections open.
        await frontend.backends.open_connections()

    async def close_backends() -> None:
        frontend.stop()

    app = PlainLitestar(
        route_handlers=[
            *operations.ROUTES,
            *auth.ROUTES,
            *api_access.ROUTES,
            *sessions.ROUTES,
            *home.ROUTES,
            *query_help.ROUTES,
            *search.ROUTES,
            *export.ROUTES,
            *saved_searches.ROUTES,
            *issues.ROUTES,
            *imported.ROUTES,
            *unsubscribe.ROUTES,
            *comment_edits.ROUTES,
            *attachments.ROUTES,
            *attachment_form.ROUTES,
            *new_issue.ROUTES,
            *new_issue_files.ROUTES,
            *component_admin.ROUTES,
            *component_webhooks.ROUTES,
            *custom_field_admin.ROUTES,
            *components.ROUTES,
            *hotlists.ROUTES,
            *following.ROUTES,
            *users.ROUTES,
            *suggest.ROUTES,
            *preview.ROUTES,
            *live.ROUTES,
            *live_list.ROUTES,
            *dev_mail.ROUTES,
            *dead_letters.ROUTES,
        ],
        before_request=before_request,
        exception_handlers={Exception: error_page},
        on_startup=[open_backends],
        on_shutdown=[close_backends],
        state=None,
        debug=False,
        openapi_config=None,
        # Logging is the process's (bugless_core.logs: JSON lines, --log-level).
        # Litestar's default config would replace the root handler with its
        # own queue and text format at INFO, dropping both, and log every
        # request through a second thread.
        logging_config=None,
    )
    app.state["frontend"] = frontend
    # Wrapping the whole handler (not per route) makes 404s, 405s and steered
    # requests pass through too.
    app.asgi_handler = security_headers_middleware(
        session_middleware(drain_middleware(app.asgi_handler))
    )
    if frontend.metrics is not None:
        # Outside the others: a steered request or an error page counts too.
        app.asgi_handler = metrics_middleware(app.asgi_handler, frontend.metrics)
    if tracing.enabled():
        from opentelemetry.instrumentation.asgi import (  # noqa: PLC0415 - only when tracing is on
            OpenTelemetryMiddleware,
        )

        # Outermost: the span covers middleware and error pages too.
        app.asgi_handler = cast("ASGIApp", OpenTelemetryMiddleware(app.asgi_handler))
    return app


__all__ = ["create_app", "frontend_of"]
