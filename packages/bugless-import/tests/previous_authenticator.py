"""``bugless auth serve`` as a release before ``ListGroupMembers`` serves: without that method.

The Authenticator's own servicer, subclassed to map every method but
``ListGroupMembers``, so the server answers it as one of an earlier release
does (UNIMPLEMENTED naming the method; see ``bugless_core.clients.method_missing``
for how releases before that answered); everything else is the real server
on the real store. Run as ``python previous_authenticator.py auth serve ...``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from bugless_auth import runner
from bugless_auth.servicer import AuthenticatorServicer
from bugless_core.cli import main
from bugless_core.grpc import AccessTable


class PreviousAuthenticator(AuthenticatorServicer):
    """The servicer without the RPC the release after it added."""

    ACCESS: ClassVar[AccessTable] = {
        rpc: callers
        for rpc, callers in AuthenticatorServicer.ACCESS.items()
        if rpc != "ListGroupMembers"
    }

    def __mapping__(self) -> dict[str, Any]:
        """The methods an Authenticator of the previous release serves."""
        mapping = dict(super().__mapping__())
        del mapping["/bugless.v1.Authenticator/ListGroupMembers"]
        return mapping


if __name__ == "__main__":
    runner.AuthenticatorServicer = PreviousAuthenticator  # type: ignore[attr-defined]
    main()
