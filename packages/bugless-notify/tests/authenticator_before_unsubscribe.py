"""``bugless auth serve`` as a release before one-click unsubscribe links: without their RPCs.

The Authenticator's own servicer, subclassed to map every method but
``IssueUnsubscribeTokens`` and ``RedeemUnsubscribeToken``, so the server
answers them as one of an earlier release does (UNIMPLEMENTED naming the
method); everything else is the real server on the real store. Run as
``python authenticator_before_unsubscribe.py auth serve ...``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from bugless_auth import runner
from bugless_auth.servicer import AuthenticatorServicer
from bugless_core.cli import main
from bugless_core.grpc import AccessTable

#: The RPCs the release after it added.
ADDED = ("IssueUnsubscribeTokens", "RedeemUnsubscribeToken")


class AuthenticatorBeforeUnsubscribe(AuthenticatorServicer):
    """The servicer without the RPCs the release after it added."""

    ACCESS: ClassVar[AccessTable] = {
        rpc: callers for rpc, callers in AuthenticatorServicer.ACCESS.items() if rpc not in ADDED
    }

    def __mapping__(self) -> dict[str, Any]:
        """The methods an Authenticator of the previous release serves."""
        mapping = dict(super().__mapping__())
        for rpc in ADDED:
            del mapping[f"/bugless.v1.Authenticator/{rpc}"]
        return mapping


if __name__ == "__main__":
    runner.AuthenticatorServicer = AuthenticatorBeforeUnsubscribe  # type: ignore[attr-defined]
    main()
