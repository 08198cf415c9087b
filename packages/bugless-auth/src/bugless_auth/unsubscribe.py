"""One-click unsubscribe tokens (RFC 8058): one person, one issue, a limited time.

A notification mail's ``List-Unsubscribe`` link, and the link of its "stop
mail about this issue" footer, carry a token that lets whoever follows it
mute that one issue for that one person, with no session: a mail client
posts to it unattended (``List-Unsubscribe-Post: List-Unsubscribe=One-Click``).
The Authenticator signs it, because only it may vouch for a person; the
notifier asks for the tokens of the mails it renders
(``IssueUnsubscribeTokens``) and the web redeems one
(``RedeemUnsubscribeToken``) for an assertion of that person, which it uses
for nothing but the mute.

The token is a JWT signed with the session token keys (``typ``
``bugless-unsubscribe``, so it never passes as a session token, nor one of
those as it): ``sub`` the person, ``iid`` the issue, ``exp``
:data:`TTL_SECONDS` after the mail was rendered. Rotating the keys rotates
these too; a key removed ends the links it signed, which then answer with
the reason (the person can still mute on the issue's page).
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Mapping
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OKPKey

from bugless_auth.tokens import SigningKey
from bugless_core.errors import InvalidArgument

#: ``typ`` claim of unsubscribe tokens.
UNSUBSCRIBE_TYPE = "bugless-unsubscribe"
#: How long a mail's unsubscribe link works: long enough for mail read late.
TTL_SECONDS = 60 * 86400
_ALGORITHMS = ("Ed25519", "HS256")
FORGED = (
    "token: this unsubscribe link was not issued by this bugless, or was changed on "
    "the way; nothing was muted (press Mute on the issue's page instead)"
)


def _expired(at: int) -> str:
    day = datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%d")
    return (
        f"token: this unsubscribe link expired on {day}; nothing was muted "
        "(press Mute on the issue's page instead)"
    )


class UnsubscribeTokens:
    """Signs and checks unsubscribe tokens with the session token key ring."""

    def __init__(self, keys: tuple[SigningKey, ...], *, issuer: str) -> None:
        """Sign with ``keys[0]``; accept tokens any of ``keys`` signed."""
        self._signing = keys[0]
        self._verifying = KeySet(list(keys))
        self._issuer = issuer

    def issue(self, user_id: str, issue_id: int, *, ttl_seconds: float = TTL_SECONDS) -> str:
        """A token muting ``issue_id`` for ``user_id``, working for ``ttl_seconds``."""
        now = int(time.time())
        claims = {
            "iss": self._issuer,
            "sub": user_id,
            "iid": issue_id,
            "iat": now,
            "exp": now + int(ttl_seconds),
            "typ": UNSUBSCRIBE_TYPE,
        }
        alg = "Ed25519" if isinstance(self._signing, OKPKey) else "HS256"
        header = {"alg": alg, "kid": self._signing.kid}
        return jwt.encode(header, claims, self._signing, algorithms=_ALGORITHMS)

    def verify(self, token: str) -> tuple[str, int]:
        """The person and issue ``token`` grants.

        Raises:
            InvalidArgument: forged, altered, of another kind or issuer, from
                a removed key, or expired; the message says which and that
                nothing was muted.
        """
        try:
            decoded = jwt.decode(token, self._verifying, algorithms=_ALGORITHMS)
        except (JoseError, ValueError, TypeError) as exc:
            raise InvalidArgument(FORGED, metadata={"field": "token"}) from exc
        claims: Mapping[str, Any] = decoded.claims
        user_id, issue_id, expires = claims.get("sub"), claims.get("iid"), claims.get("exp")
        if (
            claims.get("iss") != self._issuer
            or claims.get("typ") != UNSUBSCRIBE_TYPE
            or not isinstance(user_id, str)
            or not user_id
            or not isinstance(issue_id, int)
            or isinstance(issue_id, bool)
            or issue_id < 1
            or not isinstance(expires, int)
        ):
            raise InvalidArgument(FORGED, metadata={"field": "token"})
        if expires <= time.time():
            raise InvalidArgument(_expired(expires), metadata={"field": "token"})
        return user_id, issue_id
