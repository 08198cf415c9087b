"""Signing in and out: username/password, and the OIDC redirect flow.

The web tier never sees a password hash or a provider secret: it hands the
credentials (or the provider's redirect) to the Authenticator and keeps the
token it gets back in the sealed session cookie. The OIDC ``flow_state``
(state, nonce, PKCE verifier, signed by the Authenticator) waits in the same
cookie between the redirect out and the redirect back.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath
from litestar.response import Redirect

from bugless_core.clients import call
from bugless_core.errors import BuglessError, FailedPrecondition, InvalidArgument, Unauthenticated
from bugless_proto import v1
from bugless_web.frontend import (
    frontend_of,
    local_url,
    optional_viewer,
    redirect,
    render,
    session_of,
    viewer_of,
)

#: Longest provider error text echoed on the sign-in page.
_MAX_PROVIDER_ERROR = 300


def _redirect_uri(request: Request[Any, Any, Any]) -> str:
    """Where the provider sends the browser back: the same URI in both legs of a flow.

    ``--public-url`` when set (the address people use, which the provider
    has registered); otherwise this request's own base URL, which is right
    when the browser reaches this replica under the name it was started on.
    The Authenticator seals the URI into the flow and refuses a callback
    that names another, and the provider refuses unregistered ones, so a
    forged Host header can only break a sign-in, never divert the code.
    """
    base = frontend_of(request).settings.public_url or str(request.base_url).rstrip("/")
    return f"{base}/signin/oidc/callback"


async def _sign_in_page(
    request: Request[Any, Any, Any], *, error: str = "", username: str = "", status_code: int = 200
) -> Response[str]:
    methods = await frontend_of(request).backends.authenticators()
    return render(
        request,
        "signin.html",
        {
            "password_methods": [m for m in methods if m.kind == "password"],
            "oidc_methods": [m for m in methods if m.kind == "oidc"],
            "next": local_url(request.query_params.get("next")),
            "error": error,
            "username": username,
        },
        status_code=status_code,
    )


#: Refusals of a sign-in whose password was right, shown as the Authenticator words them.
_SAID_AFTER_THE_PASSWORD = frozenset({"USERNAME_UNUSABLE", "USER_DISABLED"})


@get("/signin", name="signin")
async def sign_in_form(request: Request[Any, Any, Any]) -> Response[Any]:
    """The sign-in page (or straight on when already signed in)."""
    if await optional_viewer(request) is not None:
        return redirect(local_url(request.query_params.get("next")))
    return await _sign_in_page(request)


@post("/signin")
async def sign_in(request: Request[Any, Any, Any]) -> Response[Any]:
    """Check a username and password with the Authenticator; keep its token."""
    form = await request.form()
    username = str(form.get("username", "")).strip()
    password = str(form.get("password", ""))
    next_url = local_url(str(form.get("next", "")))
    if not username or not password:
        return await _sign_in_page(
            request, error="Enter your username and password.", username=username, status_code=400
        )
    backends = frontend_of(request).backends
    client = request.client.host if request.client else ""
    try:
        result = await call(
            backends.auth.authenticate_password,
            v1.AuthenticatePasswordRequest(
                username=username, password=password, client_address=client
            ),
        )
    except Unauthenticated as exc:
        # The password was right but the directory's name for this person
        # cannot be a bugless username, or the account is disabled: say so
        # (they cannot fix it by retyping, and a person told "wrong password"
        # resets a password that was never the problem). The Authenticator
        # says either only after the password checked out, so a wrong one
        # still learns nothing about the account.
        error = (
            exc.message if exc.reason in _SAID_AFTER_THE_PASSWORD else "Wrong username or password."
        )
        return await _sign_in_page(request, error=error, username=username, status_code=401)
    except FailedPrecondition as exc:
        # The password was right but the sign-in cannot go on as things
        # stand, e.g. the directory's name for this person is held by
        # another backend's user: the sign-in page says what an
        # administrator has to fix, rather than a bare error page.
        return await _sign_in_page(
            request, error=exc.message, username=username, status_code=exc.http_status
        )
    session = session_of(request)
    session.sign_out()  # a new CSRF secret for the new identity (no fixation)
    session.update(token=result.token)
    return redirect(next_url)


@get("/signin/oidc/start/{authenticator:str}")
async def begin_oidc(
    request: Request[Any, Any, Any], authenticator: FromPath[str]
) -> Response[Any]:
    """Start the provider's redirect flow (a GET, so CSP form-action stays 'self').

    Starting a flow changes nothing a forged request could abuse: finishing
    it needs the flow_state that only this browser's cookie holds.
    """
    backends = frontend_of(request).backends
    started = await call(
        backends.auth.begin_oidc,
        v1.BeginOidcRequest(authenticator=authenticator, redirect_uri=_redirect_uri(request)),
    )
    session_of(request).update(
        oidc_state=started.flow_state,
        oidc_authenticator=authenticator,
        return_to=local_url(request.query_params.get("next")),
    )
    if not started.authorization_url.startswith(("https://", "http://")):
        msg = "the Authenticator returned an authorization URL that is not http(s)"
        raise InvalidArgument(msg)
    return Redirect(started.authorization_url, status_code=303)


@get("/signin/oidc/callback", name="oidc_callback")
async def complete_oidc(request: Request[Any, Any, Any]) -> Response[Any]:
    """The provider sent the browser back: let the Authenticator finish the flow."""
    session = session_of(request)
    params = request.query_params
    if not session.oidc_state:
        # Checked first: without a flow of this browser's, the provider's
        # "reason" is only what the link says, and anyone can write a link
        # that shows their text on this site's sign-in page.
        return await _sign_in_page(
            request,
            error="That sign-in link has expired or was opened in another browser; try again.",
            status_code=400,
        )
    if params.get("error"):
        # The flow is over either way: a retry starts a new one.
        session.update(oidc_state="", oidc_authenticator="")
        reason = params.get("error", "")
        if params.get("error_description"):
            reason = f"{reason} ({params.get('error_description')})"
        return await _sign_in_page(
            request,
            error=f"The provider refused the sign-in: {reason[:_MAX_PROVIDER_ERROR]}.",
            status_code=401,
        )
    backends = frontend_of(request).backends
    try:
        result = await call(
            backends.auth.complete_oidc,
            v1.CompleteOidcRequest(
                authenticator=session.oidc_authenticator,
                flow_state=session.oidc_state,
                code=params.get("code", ""),
                state=params.get("state", ""),
                redirect_uri=_redirect_uri(request),
                client_address=request.client.host if request.client else "",
            ),
        )
    except BuglessError as exc:
        if exc.http_status >= 500:
            # Unavailable or internal: nothing was decided, and the code may
            # still be good, so the flow stays for a reload to retry.
            raise
        # Any refusal ends the flow (the provider's code is spent or bad):
        # a bad flow, a name that cannot be a username, a name another
        # backend's user holds. The sign-in page says why; retrying
        # starts a new flow.
        session.update(oidc_state="", oidc_authenticator="")
        status = 401 if isinstance(exc, Unauthenticated | InvalidArgument) else exc.http_status
        return await _sign_in_page(
            request, error=f"Sign-in did not complete: {exc.message}", status_code=status
        )
    return_to = local_url(session.return_to)
    session.sign_out()
    session.update(token=result.token)
    return redirect(return_to)


async def _end_sessions(request: Request[Any, Any, Any], *, everywhere: bool) -> int:
    """End this browser's session (or all of its user's) in the Authenticator.

    The session lives there, not in the cookie: a copy of the cookie taken
    before sign-out is refused by every replica once its token cache
    (``--token-cache-seconds``) has let go of it. An Authenticator that
    cannot be reached is a 503 and the browser stays signed in (nothing was
    ended, so nothing pretends to be).
    """
    session = session_of(request)
    backends = frontend_of(request).backends
    revoked = 0
    if session.token:
        try:
            reply = await call(
                backends.auth.revoke_sessions,
                v1.RevokeSessionsRequest(token=session.token, everywhere=everywhere),
            )
            revoked = reply.revoked
        except Unauthenticated:
            pass  # already ended or expired: signing out only forgets it here
        backends.forget_token(session.token)
    session.sign_out()
    return revoked


@post("/signout")
async def sign_out(request: Request[Any, Any, Any]) -> Response[Any]:
    """End the session in the Authenticator, then forget the token here."""
    await _end_sessions(request, everywhere=False)
    session_of(request).update(notice="You are signed out.")
    return redirect("/signin")


@post("/signout/everywhere")
async def sign_out_everywhere(request: Request[Any, Any, Any]) -> Response[Any]:
    """End every session of the signed-in person, on every device."""
    await viewer_of(request)
    revoked = await _end_sessions(request, everywhere=True)
    session_of(request).update(notice=f"You are signed out everywhere ({revoked} session(s)).")
    return redirect("/signin")


ROUTES = [sign_in_form, sign_in, begin_oidc, complete_oidc, sign_out, sign_out_everywhere]
