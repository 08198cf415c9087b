"""API access for people (issue 19): client certificates from the people CA.

* ``/settings/api-access``: the signed-in person's live certificates, revoke
  buttons, and a form that signs a pasted CSR (the key stays on their
  machine; the answer is the certificate as a file).
* ``/device``: where a person approves a ``bugless login`` started on another
  machine, by the code it shows.
* ``/device/start`` and ``/device/poll``: the JSON endpoints ``bugless
  login`` talks to. They use no cookie (so they need no CSRF token): a poll
  is authorised by the secret device code alone, and what it returns is a
  certificate for a key only the polling machine holds. Every error they
  give, a body refused before it is read or a failure of the web UI itself
  included, is ``{"error": message, "code": gRPC status name}``
  (:func:`json_error_of`), the one shape ``bugless login`` reads.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
from typing import Any

from grpclib.const import Status
from litestar import Request, Response, get, post
from litestar.exceptions import HTTPException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge

from bugless_core.clients import call
from bugless_core.errors import BuglessError, InvalidArgument, SizeLimitExceeded, Unavailable
from bugless_proto import v1
from bugless_web.frontend import (
    frontend_of,
    redirect,
    render,
    retry_after_header,
    session_of,
    viewer_of,
)

_log = logging.getLogger("bugless.web.api_access")

#: The JSON endpoints of ``bugless login``: every answer of theirs, an error too, is JSON.
JSON_PATHS = frozenset({"/device/start", "/device/poll"})
#: Paths the CSRF check leaves alone: they read no cookie and change nothing of a session.
CSRF_EXEMPT = JSON_PATHS
#: The gRPC status a refusal the router or the server framework gives (not a
#: bugless error) stands for; another 4xx is INVALID_ARGUMENT.
_ROUTING_CODES = {
    404: Status.NOT_FOUND,
    405: Status.UNIMPLEMENTED,
    413: Status.RESOURCE_EXHAUSTED,
    429: Status.RESOURCE_EXHAUSTED,
}
#: Largest JSON body the device endpoints read.
_MAX_JSON = 32 * 1024
_STATE_NAMES = {
    v1.DeviceLoginState.PENDING: "pending",
    v1.DeviceLoginState.APPROVED: "approved",
    v1.DeviceLoginState.DENIED: "denied",
    v1.DeviceLoginState.EXPIRED: "expired",
    v1.DeviceLoginState.DELIVERED: "delivered",
}


def _public_base(request: Request[Any, Any, Any]) -> str:
    return frontend_of(request).settings.public_url or str(request.base_url).rstrip("/")


#: What a shell takes as one word as it is (shlex.quote's set, plus ``~`` so
#: that a home-relative path still expands).
_SHELL_WORD = re.compile(r"[\w@%+=:,./~-]+")


def _api_command_parts(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The ``--api`` and ``--ca`` values of the page's login command ("": a placeholder).

    The CA file is quoted for a shell when it needs it (a space in a path),
    so the command still copies whole.
    """
    settings = frontend_of(request).settings
    ca = settings.api_ca_hint
    if ca and not _SHELL_WORD.fullmatch(ca):
        ca = shlex.quote(ca)
    return {"api_address": settings.api_public_address, "api_ca": ca}


async def _certificates(request: Request[Any, Any, Any], token: str) -> list[v1.PersonCertificate]:
    reply = await call(
        frontend_of(request).backends.auth.list_person_certificates,
        v1.ListPersonCertificatesRequest(token=token),
    )
    return list(reply.certificates)


@get("/settings/api-access")
async def api_access_page(request: Request[Any, Any, Any]) -> Response[str]:
    """The person's live certificates and the ways to get one."""
    viewer = await viewer_of(request)
    return render(
        request,
        "api_access.html",
        {
            "title": "API access",
            "certificates": await _certificates(request, viewer.token),
            "web_url": _public_base(request),
            **_api_command_parts(request),
            "error": "",
        },
        viewer=viewer,
    )


@post("/settings/api-access/certificates")
async def sign_csr(request: Request[Any, Any, Any]) -> Response[Any]:
    """Sign a pasted CSR; the certificate comes back as a file to save."""
    viewer = await viewer_of(request)
    form = await request.form()
    try:
        seconds = float(str(form.get("validity_hours", "") or 0)) * 3600
    except ValueError:
        seconds = -1
    try:
        if seconds < 0:
            raise InvalidArgument("validity: give a number of hours")
        issued = await call(
            frontend_of(request).backends.auth.issue_person_certificate,
            v1.IssuePersonCertificateRequest(
                token=viewer.token,
                csr_pem=str(form.get("csr_pem", "")),
                validity_seconds=seconds,
                label=str(form.get("label", "")),
            ),
        )
    except BuglessError as exc:
        if exc.http_status >= 500 or exc.http_status in (401, 403):
            raise
        return render(
            request,
            "api_access.html",
            {
                "title": "API access",
                "certificates": await _certificates(request, viewer.token),
                "web_url": _public_base(request),
                **_api_command_parts(request),
                "error": exc.message,
                "csr_pem": str(form.get("csr_pem", "")),
            },
            status_code=exc.http_status,
            viewer=viewer,
        )
    name = f"bugless-{viewer.user.username}-{issued.serial[:8]}.pem"
    return Response(
        issued.certificate_pem,
        media_type="application/x-pem-file",
        headers={"content-disposition": f'attachment; filename="{name}"'},
    )


@post("/settings/api-access/revoke")
async def revoke(request: Request[Any, Any, Any]) -> Response[Any]:
    """Revoke one of the person's certificates."""
    viewer = await viewer_of(request)
    form = await request.form()
    serial = str(form.get("serial", ""))
    await call(
        frontend_of(request).backends.auth.revoke_person_certificate,
        v1.RevokePersonCertificateRequest(token=viewer.token, serial=serial),
    )
    session_of(request).update(
        notice=f"Certificate {serial[:12]}… revoked: the API refuses it from now on."
    )
    return redirect("/settings/api-access")


@get("/device")
async def device_page(request: Request[Any, Any, Any]) -> Response[str]:
    """Enter (or confirm) the code a ``bugless login`` shows."""
    viewer = await viewer_of(request)
    code = request.query_params.get("code", "")
    login = None
    error = ""
    if code:
        try:
            login = await call(
                frontend_of(request).backends.auth.get_device_login,
                v1.GetDeviceLoginRequest(token=viewer.token, user_code=code),
            )
        except BuglessError as exc:
            if exc.http_status >= 500 or exc.http_status in (401, 403):
                raise
            error = exc.message
    return render(
        request,
        "device.html",
        {
            "title": "Approve a bugless login",
            "code": code,
            "login": login,
            "state": _STATE_NAMES.get(login.state, "") if login is not None else "",
            "error": error,
        },
        status_code=404 if error else 200,
        viewer=viewer,
    )


@post("/device")
async def decide_device(request: Request[Any, Any, Any]) -> Response[Any]:
    """Approve or deny the device login the form names."""
    viewer = await viewer_of(request)
    form = await request.form()
    code = str(form.get("code", ""))
    deny = str(form.get("decision", "")) == "deny"
    await call(
        frontend_of(request).backends.auth.approve_device_login,
        v1.ApproveDeviceLoginRequest(token=viewer.token, user_code=code, deny=deny),
    )
    session_of(request).update(
        notice="Denied: that machine gets no certificate."
        if deny
        else "Approved: `bugless login` on that machine now has a certificate for you."
    )
    return redirect("/settings/api-access")


async def _json(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The request's JSON object.

    Raises:
        SizeLimitExceeded: the body is over ``_MAX_JSON`` bytes (413).
        InvalidArgument: it is not JSON, or not an object (400).
    """
    try:
        # The routes' request_max_body_size is _MAX_JSON: a body announced
        # larger is refused before a byte of it is read, and one streamed
        # past it as soon as it gets there, so an anonymous caller cannot
        # make the web tier hold the framework's default 10 MB per request.
        body = await request.body()
    except RequestEntityTooLarge as exc:
        size = request.content_length
        said = f"{size} bytes" if size is not None else f"over {_MAX_JSON} bytes"
        msg = f"the request body is {said}; at most {_MAX_JSON} are read"
        raise SizeLimitExceeded(msg, limit_bytes=_MAX_JSON) from exc
    try:
        data = json.loads(body or b"{}")
    except (ValueError, RecursionError) as exc:
        raise InvalidArgument("the request body is not JSON") from exc
    if not isinstance(data, dict):
        raise InvalidArgument("the request body must be a JSON object")
    return data


def _json_error(exc: BuglessError) -> Response[Any]:
    """The CLI's JSON error; a 429 says in ``Retry-After`` when to try again.

    The same header as the HTML error page's 429, so a client waits as long
    as the limit asks without parsing the message.
    """
    headers = {"cache-control": "no-store"}
    if exc.http_status == 429:
        headers["retry-after"] = retry_after_header(exc)
    return Response(
        {"error": exc.message, "code": exc.grpc_status.name},
        status_code=exc.http_status,
        headers=headers,
    )


def json_error_of(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """What a device endpoint answers for an error its handler did not answer itself.

    The app's one error handler sends :data:`JSON_PATHS` here rather than
    render its HTML page: a body too large or not JSON, the router's refusal
    (``GET /device/start``), the framework's own body limit, a backend away
    (its message, 503) or failing, a bug. ``bugless login`` then reads every
    error alike (a 5xx as the service failing, exit 1) and never takes the
    web UI for another site. A failure's detail is logged, not answered.
    """
    if isinstance(exc, Unavailable) or (isinstance(exc, BuglessError) and exc.http_status < 500):
        return _json_error(exc)
    if isinstance(exc, HTTPException) and exc.status_code < 500:
        code = _ROUTING_CODES.get(exc.status_code, Status.INVALID_ARGUMENT)
        return Response(
            {"error": exc.detail, "code": code.name},
            status_code=exc.status_code,
            headers={"cache-control": "no-store"},
        )
    if isinstance(exc, BuglessError):
        _log.error("backend error on %s: %s", request.url.path, exc.message)
        status, code = exc.http_status, exc.grpc_status
    else:
        _log.exception("unexpected error on %s %s", request.method, request.url.path)
        status, code = 500, Status.INTERNAL
    failed = "the web UI could not finish this request; the error was logged"
    return Response(
        {"error": failed, "code": code.name},
        status_code=status,
        headers={"cache-control": "no-store"},
    )


@post("/device/start", status_code=200, request_max_body_size=_MAX_JSON)
async def device_start(request: Request[Any, Any, Any]) -> Response[Any]:
    """Start a device login with the CLI's CSR (JSON in, JSON out)."""
    data = await _json(request)
    try:
        seconds = float(data.get("validity_seconds") or 0)
        started = await call(
            frontend_of(request).backends.auth.start_device_login,
            v1.StartDeviceLoginRequest(
                csr_pem=str(data.get("csr_pem", "")),
                label=str(data.get("label", "")),
                client_address=request.client.host if request.client else "",
                validity_seconds=seconds,
            ),
        )
    except (TypeError, ValueError):
        return _json_error(InvalidArgument("validity_seconds: give a number"))
    except BuglessError as exc:
        if exc.http_status >= 500:
            raise
        return _json_error(exc)
    base = _public_base(request)
    return Response(
        {
            "device_code": started.device_code,
            "user_code": started.user_code,
            "verification_uri": f"{base}/device",
            "verification_uri_complete": f"{base}/device?code={started.user_code}",
            "expires_in": started.expires_in_seconds,
            "interval": started.interval_seconds,
        },
        headers={"cache-control": "no-store"},
    )


@post("/device/poll", status_code=200, request_max_body_size=_MAX_JSON)
async def device_poll(request: Request[Any, Any, Any]) -> Response[Any]:
    """The device login's state; the certificate once approved (JSON)."""
    data = await _json(request)
    try:
        reply = await call(
            frontend_of(request).backends.auth.poll_device_login,
            v1.PollDeviceLoginRequest(device_code=str(data.get("device_code", ""))),
        )
    except BuglessError as exc:
        if exc.http_status >= 500:
            raise
        return _json_error(exc)
    return Response(
        {
            "state": _STATE_NAMES.get(reply.state, "unknown"),
            "certificate_pem": reply.certificate_pem,
            "username": reply.username,
        },
        headers={"cache-control": "no-store"},
    )


ROUTES = [api_access_page, sign_csr, revoke, device_page, decide_device, device_start, device_poll]
