"""``/admin/notifications``: deliveries the notifier gave up on, for admins.

The notifier keeps a delivery it could not make (a webhook URL that answers
404, a mailbox the relay refuses, attempts exhausted) as a dead letter with
the reason, and goes on with every other delivery. This page lists them
(from ``bugless.v1.Notifier/GetDeliveryStatus`` on ``--notify``) with a
retry button (queue again, due now, a fresh attempt budget: after fixing
the URL or the mailbox) and a discard button. Admins only: the web checks
the person (the notifier admits the web's service identity, not people).
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post

from bugless_core.clients import call
from bugless_core.errors import InvalidArgument, PermissionDenied
from bugless_proto import v1
from bugless_web.backends import Viewer
from bugless_web.frontend import audit, frontend_of, redirect, render, session_of, viewer_of

#: Dead letters shown on the page (newest first).
SHOWN = 200


async def _admin(request: Request[Any, Any, Any]) -> Viewer:
    viewer = await viewer_of(request)
    if not viewer.is_admin:
        raise PermissionDenied("failed notification deliveries are for admins only")
    return viewer


@get("/admin/notifications")
async def dead_letters(request: Request[Any, Any, Any]) -> Response[str]:
    """Delivery counts and the newest dead letters, with retry and discard."""
    await _admin(request)
    notifier = frontend_of(request).backends.notifier
    status = None
    if notifier is not None:
        status = await call(
            notifier.get_delivery_status, v1.GetDeliveryStatusRequest(max_dead_letters=SHOWN)
        )
    return render(request, "dead_letters.html", {"status": status})


@post("/admin/notifications/dead-letters")
async def act_on_dead_letters(request: Request[Any, Any, Any]) -> Response[Any]:
    """``action=retry`` or ``action=discard`` the checked (``id``) dead letters."""
    viewer = await _admin(request)
    notifier = frontend_of(request).backends.notifier
    if notifier is None:
        raise InvalidArgument("no notifier is configured (--notify)")
    form = await request.form()
    action = form.get("action", "")
    ids = [i for i in form.getall("id") if i] if "id" in form else []
    if action not in ("retry", "discard"):
        raise InvalidArgument(f"action: {action!r} is not retry or discard")
    if not ids:
        session_of(request).update(notice="Nothing selected.")
        return redirect("/admin/notifications")
    method = notifier.retry_dead_letters if action == "retry" else notifier.discard_dead_letters
    done = await call(method, v1.DeadLettersRequest(delivery_ids=ids))
    audit(viewer, f"dead_letters.{action}", "notifier", delivery_ids=ids, changed=done.changed)
    verb = "Queued again" if action == "retry" else "Discarded"
    session_of(request).update(notice=f"{verb}: {done.changed} of {len(ids)}.")
    return redirect("/admin/notifications")


ROUTES = [dead_letters, act_on_dead_letters]
