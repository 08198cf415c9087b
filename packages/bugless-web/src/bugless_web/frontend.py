"""The per-process runtime of the web tier and the helpers every route uses.

:class:`Frontend` bundles what a replica holds for its lifetime (settings,
backend clients, the session codec, templates, assets, the drain state).
Routes reach it through :func:`frontend_of` and use :func:`viewer_of` to
require a signed-in person and :func:`render` to produce a page, so the
plumbing (CSRF token, notices, static URLs) lives here once.
"""

from __future__ import annotations

import functools
import hmac
import logging
import math
import secrets
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
from jinja2.runtime import Context
from jinja2.utils import missing
from litestar import Request, Response
from litestar.enums import MediaType
from litestar.response import Redirect
from markupsafe import Markup, escape

from bugless_core import ids
from bugless_core.attachments import IMAGE_TYPES
from bugless_core.blobs import describe_size
from bugless_core.clients import CURRENT_ASSERTION, call
from bugless_core.errors import (
    BuglessError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)
from bugless_proto import v1
from bugless_web import display
from bugless_web.assets import AssetCatalog
from bugless_web.backends import Backends, Viewer
from bugless_web.drain import DrainState
from bugless_web.form_errors import field_attrs, field_error, field_id
from bugless_web.kept_attachments import KeptAttachments
from bugless_web.markup import render_text
from bugless_web.metrics import WebMetrics, default_registry
from bugless_web.rendered_timelines import RenderedTimelines
from bugless_web.result_columns import COLUMNS, saved_search_href
from bugless_web.result_rows import result_rows
from bugless_web.session import DEV_COOKIE_NAME, SECURE_COOKIE_NAME, Session, SessionCodec
from bugless_web.settings import WebSettings

_log = logging.getLogger("bugless.web")
_audit_log = logging.getLogger("bugless.web.audit")
TEMPLATE_DIR = Path(__file__).parent / "templates"
#: Key of the session in the ASGI scope's state (set by the session middleware).
SESSION_KEY = "bugless_session"
#: Key of the validated viewer in the ASGI scope's state (once per request).
VIEWER_KEY = "bugless_viewer"


class SignInRequired(BuglessError):
    """The page needs a signed-in person and there is none (or the token expired)."""

    http_status = 401
    default_reason = "SIGN_IN_REQUIRED"


class CsrfRejected(BuglessError):
    """A state-changing request without this session's CSRF token."""

    http_status = 403
    default_reason = "CSRF"


#: Route option: the route reads the CSRF token from its streamed body itself.
CSRF_IN_STREAM = "csrf_in_stream"


def require_csrf(request: Request[Any, Any, Any], sent: str) -> None:
    """Refuse (403, nothing changed) unless ``sent`` is this session's CSRF token.

    The browser's cookie is left exactly as it is: a cross-site POST arrives
    without it (SameSite=Lax), and answering with the fresh anonymous session
    would sign the person out from any site.
    """
    expected = session_of(request).csrf
    if not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        session_of(request).leave_cookie = True
        msg = (
            "this form has expired or did not come from this site; "
            "reload the page and submit it again (nothing was changed)"
        )
        raise CsrfRejected(msg)


class Frontend:
    """Everything a replica keeps for its lifetime (nothing per user)."""

    def __init__(self, settings: WebSettings) -> None:
        self.settings = settings
        self._backends: Backends | None = None
        self.codec = SessionCodec(
            settings.session_keys, max_age_seconds=settings.session_max_age_seconds
        )
        self.assets = AssetCatalog(archive=settings.asset_archive_dir)
        self.drain = DrainState()
        self.templates = _template_environment(self.assets, auto_reload=settings.dev)
        #: Issue timelines rendered once per (issue, version, reader).
        self.timelines = RenderedTimelines(settings.timeline_cache_seconds)
        #: Issue attachment lists fetched once per (issue, version).
        self.attachments = KeptAttachments(settings.timeline_cache_seconds)
        #: Requests and backend calls counted for ``/metrics`` (``--metrics-port``).
        self.metrics: WebMetrics | None = (
            WebMetrics.for_registry(default_registry())
            if settings.metrics_port is not None
            else None
        )

    @property
    def backends(self) -> Backends:
        """The gRPC clients (created at application start-up)."""
        if self._backends is None:
            msg = "the application has not started: backends are made on start-up"
            raise RuntimeError(msg)
        return self._backends

    def start(self) -> None:
        """Open the clients on the serving event loop (grpclib channels bind to it)."""
        if self._backends is None:
            self._backends = Backends(self.settings, metrics=self.metrics)

    def stop(self) -> None:
        """Close the clients (application shutdown)."""
        if self._backends is not None:
            self._backends.close()
            self._backends = None

    @property
    def cookie_name(self) -> str:
        """``__Host-bugless`` normally; a plain name in ``--dev`` (no HTTPS)."""
        return DEV_COOKIE_NAME if self.settings.dev else SECURE_COOKIE_NAME


@jinja2.pass_context
def csrf_inputs(context: Context) -> Markup:
    """A form's hidden CSRF token and build id (``{{ csrf() }}`` in a template).

    A function rather than a macro: a macro reading the page's token had to be
    imported ``with context``, which rebuilt the macro module on every render.
    A page rendered without ``csrf_token`` fails, as the macro did.
    """
    token = context.resolve_or_missing("csrf_token")
    if token is missing:
        token = context.environment.undefined(name="csrf_token")
    return Markup(
        f'<input type="hidden" name="_csrf" value="{escape(token)}">'
        f'<input type="hidden" name="_build" value="{escape(context["build_id"])}">'
    )


@functools.lru_cache(maxsize=1024)
def _quote_query(query: object) -> str:
    """A query as a URL parameter value, kept per query (``urlencode_query``).

    A list's header links every sortable column's re-sorted query: the same
    few strings page after page, each quoted once per process, not per page.
    """
    return urllib.parse.quote_plus(str(query))


def _ascii_html(text: object) -> Markup:
    """``text`` escaped, with each character beyond ASCII as a character reference.

    For the chrome's own text that may hold such characters (a query's
    explanation writes dashes): the browser shows the same characters, and a
    page that is otherwise ASCII stays one byte a character in Python and is
    encoded at memory speed, where one such character costs a list page
    60 us (tests/test_lists.py, ``test_a_list_of_ascii_issues_is_an_ascii_page``).
    """
    escaped = str(escape(text))
    if escaped.isascii():
        return Markup(escaped)
    return Markup(escaped.encode("ascii", "xmlcharrefreplace").decode("ascii"))


def _template_environment(assets: AssetCatalog, *, auto_reload: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        auto_reload=auto_reload,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        static_url=assets.url,
        build_id=assets.build_id,
        user_chip=display.user_chip,
        result_rows=result_rows,
        # Helpers every form and page header uses (functions, not macros: see csrf_inputs).
        csrf=csrf_inputs,
        field_id=field_id,
        field_attrs=field_attrs,
        field_error=field_error,
        status_pill=display.status_pill,
        level_pill=display.level_pill,
        component_options=display.component_options,
        username_of=display.username_of,
        status_label=display.status_label,
        short_status=display.short_status,
        type_label=display.type_label,
        level_label=display.level_label,
        is_open=display.is_open,
        timestamp=display.timestamp,
        markdown=render_text,
        STATUS_LABELS=display.STATUS_LABELS,
        TYPE_LABELS=display.TYPE_LABELS,
        PRIORITIES=display.PRIORITIES,
        SEVERITIES=display.SEVERITIES,
        FIELD_LABELS=display.FIELD_LABELS,
        FORM_LABELS=display.FORM_LABELS,
        ROLE_LABELS=display.ROLE_LABELS,
        ACL_ROLES=display.ACL_ROLES,
        USER_FIELDS=display.USER_FIELDS,
        holds_people=display.holds_people,
        ISSUE_FIELDS=display.ISSUE_FIELDS,
        ALL_COLUMNS=COLUMNS,
        saved_search_href=saved_search_href,
        attachment_url=display.attachment_url,
        size_label=describe_size,
        IMAGE_TYPES=IMAGE_TYPES,
    )
    env.filters["urlencode_query"] = _quote_query
    env.filters["ascii_html"] = _ascii_html
    return env


def frontend_of(request: Request[Any, Any, Any]) -> Frontend:
    """The replica's runtime (stored on the application state at build time)."""
    frontend: Frontend = request.app.state["frontend"]
    return frontend


def session_of(request: Request[Any, Any, Any]) -> Session:
    """This browser's session (a fresh one when it sent no valid cookie)."""
    state = request.scope.setdefault("state", {})
    session = state.get(SESSION_KEY)
    if session is None:
        session = Session(fresh=True)
        state[SESSION_KEY] = session
    assert isinstance(session, Session)
    return session


def signed_out(session: Session, refusal: Unauthenticated) -> None:
    """Sign a browser out whose sign-in a backend refused, saying why on the next page.

    The session ended elsewhere (signed out in another tab or on another
    device, ended by an administrator, the account disabled) or the token
    expired: before, the person only found themselves on the sign-in page,
    with nothing saying what had happened or whether to ask anyone.
    """
    session.sign_out()
    session.update(notice=f"You were signed out: {refusal.message}")


async def optional_viewer(request: Request[Any, Any, Any]) -> Viewer | None:
    """The signed-in person, or None; an expired token signs the browser out."""
    state = request.scope.setdefault("state", {})
    if VIEWER_KEY in state:
        cached: Viewer | None = state[VIEWER_KEY]
        return cached
    session = session_of(request)
    viewer: Viewer | None = None
    if session.token:
        try:
            viewer = await frontend_of(request).backends.viewer(session.token)
        except Unauthenticated as exc:
            signed_out(session, exc)
    state[VIEWER_KEY] = viewer
    # Every Model call of this request acts for this person, by the signed
    # assertion the Authenticator issued (session_middleware resets it).
    CURRENT_ASSERTION.set(viewer.identity.assertion if viewer is not None else None)
    return viewer


async def viewer_of(request: Request[Any, Any, Any]) -> Viewer:
    """The signed-in person; raises :class:`SignInRequired` when there is none."""
    viewer = await optional_viewer(request)
    if viewer is None:
        msg = "sign in to see this page"
        raise SignInRequired(msg)
    return viewer


async def require_permission(
    request: Request[Any, Any, Any], viewer: Viewer, permission: str, doing: str
) -> None:
    """Ask the Authenticator whether ``viewer`` holds a global ``permission``.

    The Model trusts the frontends with global permissions (creating a
    top-level component, a hotlist), so the check happens here, before the
    Model is called. It is an ``Authorize`` call rather than a look at the
    cached identity: the answer reflects the policy and the person's groups
    as they are now, not up to ``token_cache_seconds`` ago, and it names
    the rule that granted it for the log.

    Raises:
        PermissionDenied: Not granted; the message says what was refused,
            which permission it needs, and who can grant it.
    """
    decision = await call(
        frontend_of(request).backends.auth.authorize,
        v1.AuthorizeRequest(token=viewer.token, permission=permission),
    )
    if not decision.allowed:
        msg = (
            f"{doing} needs the {permission} permission, and your account does not have it; "
            "an administrator can grant it through the Authenticator's policy"
        )
        raise PermissionDenied(msg)
    _log.info(
        "%s may %s: %s",
        viewer.caller.user_id,
        permission,
        decision.granted_by,
        extra={"user_id": viewer.caller.user_id, "permission": permission},
    )


def audit(viewer: Viewer, action: str, target: str, /, **details: object) -> None:
    """Log who changed what through this replica (``bugless.web.audit``, one line each).

    The Model keeps the history of issues (hotlist memberships included); for
    changes to hotlists, saved searches and components themselves it keeps
    only the new state and a version, so the web tier logs each one it makes.
    Positional-only, so a detail may be called ``target`` or ``action`` too:
    it is logged after the Model made the change, and a clash raising here
    would show an error page for a change that was made.
    """
    _audit_log.info(
        "%s %s %s",
        viewer.user.username or viewer.caller.user_id,
        action,
        target,
        # Prefixed: some names (``name``, ``message``) are LogRecord's own.
        extra={
            "user_id": viewer.caller.user_id,
            "action": action,
            "target": target,
            **{f"audit_{key}": value for key, value in details.items()},
        },
    )


def local_url(candidate: str | None, default: str = "/") -> str:
    r"""``candidate`` if it is a path on this site, else ``default``.

    Only ``/path?query`` is accepted: no scheme, no host, no ``//host`` or
    ``/\host`` (which browsers treat as another site), no control characters.
    That makes open redirects through ``next=`` impossible.
    """
    if not candidate or not candidate.startswith("/") or len(candidate) > 2048:
        return default
    if candidate.startswith(("//", "/\\")) or any(ord(ch) < 0x20 for ch in candidate):
        return default
    parts = urllib.parse.urlsplit(candidate)
    if parts.scheme or parts.netloc:
        return default
    return candidate


def redirect(url: str) -> Redirect:
    """A 303 See Other to a local URL (the answer to every successful POST)."""
    return Redirect(local_url(url), status_code=303)


def render(
    request: Request[Any, Any, Any],
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
    viewer: Viewer | None = None,
) -> Response[str]:
    """Render a page with the shared context every layout needs.

    The shared context: the viewer, the CSRF token for forms, the one-shot
    notice and warning, the current path (for ``next=``) and the search box's query.
    """
    frontend = frontend_of(request)
    session = session_of(request)
    if session.fresh:
        session.modified = True  # the forms on this page carry its CSRF token
    if viewer is None:
        viewer = request.scope.get("state", {}).get(VIEWER_KEY)
    page = frontend.templates.get_template(template)
    html = page.render(
        {
            "viewer": viewer,
            "csrf_token": session.csrf,
            "notice": session.pop_notice(),
            "warning": session.pop_warning(),
            "current_path": request.url.path
            + (f"?{request.url.query}" if request.url.query else ""),
            "search_query": "",
            "dev": frontend.settings.dev,
            "draining": frontend.drain.draining,
            **(context or {}),
        }
    )
    return Response(html, media_type=MediaType.HTML, status_code=status_code)


def retry_after_header(exc: Exception) -> str:
    """Whole seconds until a throttled request may be made again (at least 1).

    The value of the ``Retry-After`` header of every 429 the web tier sends,
    the HTML error page and the CLI's JSON endpoints alike, so a client that
    reads the header (not the message) waits as long as the limit asks.
    """
    seconds = exc.retry_after if isinstance(exc, ResourceExhausted) else None
    return str(max(1, math.ceil(seconds if seconds is not None else 1.0)))


def new_idempotency_key() -> str:
    """A key for a create form, so a double submit makes one issue."""
    return secrets.token_urlsafe(18)


def path_id(text: str, field: str) -> int:
    """An id from the URL path; anything but an id in range is a 404.

    The path is read with :func:`bugless_core.ids.parse_id` (ASCII digits,
    ``1..2**63-1``), never with ``int()``: ``/issues/+301``, ``/issues/3_01``
    and ``/issues/18446744073709551917`` (``2**64 + 301``, which an ``int64``
    field would wrap to 301) name no issue.

    Raises:
        NotFound: ``text`` is not an id.
    """
    try:
        return ids.parse_id(text, field)
    except InvalidArgument as exc:
        raise NotFound(f"there is no such page: {exc.message}") from None


def form_int(value: str | None, field: str) -> int:
    """An id (or version, or position) typed into a form field or query parameter.

    Empty means 0 ("none"); a leading ``#`` and surrounding spaces are
    forgiven, since people paste ``#301``; the rest is read with
    :func:`bugless_core.ids.parse_id`, so it is never wrapped or aliased.

    Raises:
        InvalidArgument: naming ``field`` and the accepted range.
    """
    text = (value or "").strip().lstrip("#")
    if not text:
        return 0
    return ids.parse_id(text, field, allow_zero=True)


def form_ids(value: str | None, field: str) -> list[int]:
    """A comma/space separated list of issue ids from a form field."""
    text = (value or "").replace(",", " ")
    return sorted({form_int(part, field) for part in text.split() if part.strip()} - {0})
