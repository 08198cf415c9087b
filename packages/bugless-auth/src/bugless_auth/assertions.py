"""Identity assertions for the Model: signed here, verified there (SECURITY.md).

The Authenticator signs a short-lived assertion (:func:`bugless_core.assertions.sign_assertion`)
into every identity it hands a frontend: when someone signs in, and on every
``ValidateToken``. It signs with the first Ed25519 key of ``--token-key-file``
and publishes the public half of every Ed25519 key listed there
(``GetVerificationKeys``), so rotation works as it does for session tokens:
put the new key first, keep the old one until its assertions have expired.
A shared-secret (HS256) token key cannot be published: with no Ed25519 key at
all, identities carry no assertion and every Model call is anonymous (the
Authenticator logs that as an error at start).
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc.jwk import OKPKey

from bugless_auth.tokens import SigningKey
from bugless_core.assertions import DEFAULT_TTL_SECONDS, Scope, key_id, sign_assertion
from bugless_proto import v1

_log = logging.getLogger("bugless.auth")


class AssertionIssuer:
    """Signs assertions with the token key ring's Ed25519 keys."""

    def __init__(
        self,
        keys: Sequence[SigningKey],
        *,
        issuer: str,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
    ) -> None:
        """Sign with the first Ed25519 key of ``keys``; publish them all.

        Without an Ed25519 key among ``keys`` no assertion is issued.
        """
        private = [
            key.private_key
            for key in keys
            if isinstance(key, OKPKey) and isinstance(key.private_key, Ed25519PrivateKey)
        ]
        if not private:
            _log.error(
                "no Ed25519 token key (--token-key-file; `bugless auth keygen` makes one): "
                "no identity assertions are issued, so every Model call is anonymous"
            )
        self._signing = private[0] if private else None
        self._published = [
            v1.VerificationKey(
                kid=key_id(k.public_key()), ed25519_public_key=k.public_key().public_bytes_raw()
            )
            for k in private
        ]
        self.issuer = issuer
        self.ttl_seconds = ttl_seconds

    def with_assertion(
        self,
        identity: v1.Identity,
        session_id: str,
        *,
        scope: Scope | None = None,
        ttl_seconds: float | None = None,
    ) -> v1.Identity:
        """``identity`` carrying a fresh assertion of it, for ``session_id``.

        With ``scope`` the assertion is good for that one Model call only
        (a one-click unsubscribe's mute); ``ttl_seconds`` overrides how long
        it lives.
        """
        if self._signing is None:
            return identity
        user = identity.user or v1.User()
        assertion, expires_at = sign_assertion(
            self._signing,
            user_id=user.user_id,
            groups=identity.groups,
            permissions=identity.permissions,
            session_id=session_id,
            issuer=self.issuer,
            ttl_seconds=self.ttl_seconds if ttl_seconds is None else ttl_seconds,
            scope=scope,
        )
        identity.assertion = assertion
        identity.assertion_expires_at = _timestamp(expires_at)
        return identity

    def verification_keys(self, revoked_session_ids: Sequence[str]) -> v1.VerificationKeys:
        """What ``GetVerificationKeys`` answers."""
        return v1.VerificationKeys(
            keys=list(self._published),
            revoked_session_ids=list(revoked_session_ids),
            assertion_ttl_seconds=self.ttl_seconds,
        )


def _timestamp(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC)
