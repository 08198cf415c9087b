"""Probes, static assets and the admin drain switch.

``/healthz`` says the process is alive (it never calls a backend: a Model
outage must not make Kubernetes restart every web pod). ``/readyz`` says this
replica should get traffic: not draining, and both backends answering.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from litestar import Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from bugless_core.errors import BuglessError, PermissionDenied
from bugless_web.assets import IMMUTABLE_CACHE_CONTROL
from bugless_web.frontend import frontend_of, redirect, render, session_of, viewer_of

#: A readiness probe must answer before the kubelet's timeout (1 s default).
READINESS_TIMEOUT_SECONDS = 0.8


@get("/healthz", cache_control=None)
async def healthz() -> Response[str]:
    """Liveness: the process serves HTTP."""
    return Response("ok\n", media_type="text/plain", headers={"cache-control": "no-store"})


@get("/readyz")
async def readyz(request: Request[Any, Any, Any]) -> Response[str]:
    """Readiness: fails while draining or while a backend does not answer."""
    frontend = frontend_of(request)
    headers = {"cache-control": "no-store"}
    if frontend.drain.draining:
        return Response(
            f"draining ({frontend.drain.reason})\n",
            media_type="text/plain",
            status_code=503,
            headers=headers,
        )
    try:
        # The round trip only: the connections were opened at start-up
        # (Backends.open_connections), not inside this probe's timeout.
        async with asyncio.timeout(READINESS_TIMEOUT_SECONDS):
            await frontend.backends.answering()
    except (BuglessError, TimeoutError) as exc:
        reason = exc.message if isinstance(exc, BuglessError) else "a backend did not answer"
        return Response(
            f"not ready: {reason}\n", media_type="text/plain", status_code=503, headers=headers
        )
    return Response("ready\n", media_type="text/plain", headers=headers)


@get("/static/{name:path}")
async def static_asset(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[bytes]:
    """A static file by its hashed name, cacheable forever."""
    asset = frontend_of(request).assets.by_hashed_name(name.lstrip("/"))
    if asset is None:
        raise NotFoundException(f"no static file {name!r} in this version")
    return Response(
        asset.content,
        media_type=asset.media_type,
        headers={"cache-control": IMMUTABLE_CACHE_CONTROL},
    )


@get("/admin")
async def admin_page(request: Request[Any, Any, Any]) -> Response[str]:
    """Operations page for admins: drain state and the switch."""
    viewer = await viewer_of(request)
    if not viewer.is_admin:
        raise PermissionDenied("the admin permission is needed for this page")
    return _admin_page(request)


def _admin_page(request: Request[Any, Any, Any]) -> Response[str]:
    """The operations page: the drain's state (for how long, started by whom) and its switch."""
    drain = frontend_of(request).drain
    seconds = round(time.monotonic() - drain.since) if drain.draining else 0
    return render(
        request,
        "admin.html",
        {
            "drain": drain,
            "drained_for": f"{seconds // 60} min {seconds % 60} s"
            if seconds >= 60
            else f"{seconds} s",
            "steer_to": frontend_of(request).settings.steer_to,
        },
    )


@post("/admin/drain")
async def toggle_drain(request: Request[Any, Any, Any]) -> Response[Any]:
    """Start or cancel a drain of this replica (admins only)."""
    viewer = await viewer_of(request)
    if not viewer.is_admin:
        raise PermissionDenied("the admin permission is needed to drain a replica")
    form = await request.form()
    drain = frontend_of(request).drain
    if form.get("action") == "stop":
        drain.stop()
        session_of(request).update(notice="This replica takes traffic again.")
    else:
        drain.start(f"admin {viewer.user.username}")
        session_of(request).update(notice="This replica is draining.")
    # The admin page itself would be steered away while draining: answer here.
    return redirect("/admin") if not drain.draining else _admin_page(request)


ROUTES = [healthz, readyz, static_asset, admin_page, toggle_drain]
