"""One-click unsubscribe (RFC 8058): a mail's link mutes its issue for its recipient.

A notification mail carries ``List-Unsubscribe: <https://…/unsubscribe/TOKEN>``
and ``List-Unsubscribe-Post: List-Unsubscribe=One-Click``, and its footer
links the same address. The token, signed by the Authenticator for that
recipient and that issue (:mod:`bugless_auth.unsubscribe`), is the
authority: a mail client POSTs to the address unattended, with no session
cookie and no CSRF token, so the POST needs neither (``app.check_csrf``
leaves :data:`PATH_PREFIX` alone). It redeems the token for an assertion of
that person and makes one Model call with it, ``SetIssueMute(muted=true)``
on that issue: exactly what the mail's footer says "Mute" does. That the
assertion is good for nothing else is the Model's check, not this module's:
it is scoped to that call (docs/trust.md, "One-click unsubscribe").

A GET never mutes (link scanners and prefetchers follow links): it checks
the token and shows what the link would mute, with a button that POSTs.
A forged, altered or expired token is a 400 page saying which, and nothing
changes (the error page, as for every refusal).

Both pages show the header of whoever is signed in in this browser (their
menu and Sign out), as every page does; the token, not that sign-in, is what
the mute acts on. So they say whether the link is the signed-in person's
(:func:`_whose`): "to you" when it is, and when it is another's, that it is
not theirs and leaves their own mail alone, so that someone who opens a
link from a forwarded mail does not take the mute for their own. They name
no one: the link is in access logs, proxies' and link scanners' too
(docs/trust.md, "One-click unsubscribe"), and whoever holds it without the
mail must not learn from it whose mail about the issue it stops, which only
the mail's ``To:`` said.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath

from bugless_core.clients import acting_as, call
from bugless_core.errors import Unauthenticated, Unavailable
from bugless_proto import v1
from bugless_web.backends import Viewer, caller_of
from bugless_web.frontend import frontend_of, optional_viewer, render

#: The addresses of unsubscribe links (the token follows).
PATH_PREFIX = "/unsubscribe/"


def _whose(viewer: Viewer | None, user_id: str) -> str:
    """Whose link it is, as the pages say it: "mine", "another's", or "" (nobody signed in).

    Only the signed-in person is told anything, and only whether the
    token's person is they: never who else it is.
    """
    if viewer is None:
        return ""
    return "mine" if viewer.user.user_id == user_id else "another's"


@get("/unsubscribe/{token:str}")
async def confirm_unsubscribe(
    request: Request[Any, Any, Any], token: FromPath[str]
) -> Response[Any]:
    """Say what the link would mute, with a button; mute nothing."""
    viewer = await optional_viewer(request)  # the header of whoever is signed in here
    grant = await call(
        frontend_of(request).backends.auth.redeem_unsubscribe_token,
        v1.RedeemUnsubscribeTokenRequest(token=token, check_only=True),
    )
    return render(
        request,
        "unsubscribe.html",
        {
            "issue_id": grant.issue_id,
            "token": token,
            "muted": False,
            "whose": _whose(viewer, grant.user_id),
        },
    )


@post("/unsubscribe/{token:str}")
async def unsubscribe(request: Request[Any, Any, Any], token: FromPath[str]) -> Response[Any]:
    """Mute the token's issue for its person (a mail client's one-click POST, or the page's)."""
    backends = frontend_of(request).backends
    viewer = await optional_viewer(request)  # the header of whoever is signed in here
    grant = await call(
        backends.auth.redeem_unsubscribe_token, v1.RedeemUnsubscribeTokenRequest(token=token)
    )
    identity = grant.identity
    if identity is None or not identity.assertion:
        raise Unavailable("the Authenticator issued no assertion for the link's person")
    try:
        with acting_as(identity.assertion):
            await call(
                backends.model.set_issue_mute,
                v1.SetIssueMuteRequest(
                    caller=caller_of(identity), issue_id=grant.issue_id, muted=True
                ),
            )
    except Unauthenticated as exc:
        # The link's own assertion, not this browser's sign-in, was refused
        # (a Model of a release before scoped assertions, during an upgrade:
        # docs/upgrades.md): say so, and do not sign the browser out.
        raise Unavailable(
            f"the Model did not take the link's assertion ({exc.message}); "
            "if bugless is being upgraded, the link works again once it is done"
        ) from exc
    return render(
        request,
        "unsubscribe.html",
        {"issue_id": grant.issue_id, "muted": True, "whose": _whose(viewer, grant.user_id)},
    )


ROUTES = [confirm_unsubscribe, unsubscribe]
