"""Session tokens (signed JWTs) and sealed OIDC flow state.

Keys rotate without a flag day: the first configured key signs, every
configured key verifies, and a token names its key (``kid``). To rotate, put
the new key first and keep the old one listed until the tokens it signed have
expired (``token_ttl_seconds``); then remove it, and its tokens stop working.

Ed25519 keys sign with the fully specified ``Ed25519`` JWS algorithm (RFC
9864, the successor of ``EdDSA``); a shared secret signs with HS256, for
deployments where every verifier is an Authenticator replica anyway.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc import jwe, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OctKey, OKPKey

from bugless_core.errors import Unauthenticated
from bugless_core.page_tokens import PageTokenCodec

_ALGORITHMS = ("Ed25519", "HS256")
_MIN_SECRET_BYTES = 32
#: ``typ`` claim of session tokens, so no other signed object can pass as one.
SESSION_TYPE = "bugless-session"
_FLOW_ENCRYPTION = {"alg": "dir", "enc": "A256GCM"}
INVALID_TOKEN = "the token is invalid: sign in again"
EXPIRED_TOKEN = "the token has expired: sign in again"

SigningKey = OKPKey | OctKey


class KeyFileError(ValueError):
    """A token key file cannot be used; the message names the file and why."""


def load_key(path: Path) -> SigningKey:
    """Read one key file: PEM Ed25519, a JWK (OKP Ed25519 or oct), or a raw secret.

    Raises:
        KeyFileError: unreadable, an unsupported key type, or a secret shorter
            than 32 bytes.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"token key file {path}: {exc.strerror or exc}") from exc
    return parse_key(data, origin=str(path))


def parse_key(data: bytes, *, origin: str) -> SigningKey:
    """Parse key material as :func:`load_key` reads it; ``origin`` names it in errors."""
    stripped = data.strip()
    key: SigningKey
    try:
        if stripped.startswith(b"-----BEGIN"):
            key = OKPKey.import_key(stripped)
        elif stripped.startswith(b"{"):
            jwk = json.loads(stripped)
            if jwk.get("kty") == "oct":
                key = OctKey.import_key(jwk)
            elif jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
                key = OKPKey.import_key(jwk)
            else:
                raise KeyFileError(f"{origin}: only Ed25519 (OKP) and oct JWKs are supported")
        else:
            if len(stripped) < _MIN_SECRET_BYTES:
                raise KeyFileError(
                    f"{origin}: a shared secret must be at least {_MIN_SECRET_BYTES} bytes"
                )
            key = OctKey.import_key(stripped)
    except (JoseError, ValueError, TypeError) as exc:
        if isinstance(exc, KeyFileError):
            raise
        raise KeyFileError(f"{origin}: not an Ed25519 PEM key, a JWK or a secret ({exc})") from exc
    if isinstance(key, OKPKey) and key.curve_name != "Ed25519":
        raise KeyFileError(f"{origin}: only Ed25519 keys are supported, not {key.curve_name}")
    key.ensure_kid()
    return key


def generate_ed25519_pem() -> bytes:
    """A new Ed25519 private key in PEM, for ``bugless auth keygen`` and tests."""
    pem: bytes = OKPKey.generate_key("Ed25519").as_pem(private=True)
    return pem


@dataclass(frozen=True)
class SessionClaims:
    """What a valid session token says."""

    user_id: str
    authenticator: str
    expires_at: float
    #: The session the token belongs to (its ``jti``).
    token_id: str


@dataclass(frozen=True)
class IssuedToken:
    """A new session token, when it expires, and the session it names."""

    token: str
    expires_at: float
    session_id: str


def _algorithm(key: SigningKey) -> str:
    return "Ed25519" if isinstance(key, OKPKey) else "HS256"


def _derived_secret(key: SigningKey, purpose: bytes) -> bytes:
    """32 bytes derived (HKDF) from a signing key for one ``purpose``.

    Derived rather than configured separately so that rotating the token
    keys rotates them too, and a deployment has one secret to manage.
    """
    material = json.dumps(key.as_dict(private=True), sort_keys=True).encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(material)


def _encryption_key(key: SigningKey) -> OctKey:
    """A 256-bit AES key derived from a signing key, for sealing flow state."""
    derived = _derived_secret(key, b"bugless-auth flow state")
    return OctKey.import_key(derived, {"kid": str(key.kid)})


class TokenAuthority:
    """Issues and verifies session tokens with a key ring."""

    def __init__(self, keys: Sequence[SigningKey], *, issuer: str, ttl_seconds: float) -> None:
        """Sign with ``keys[0]``; accept tokens signed by any of ``keys``.

        Raises:
            ValueError: no keys, or two keys with one ``kid``.
        """
        if not keys:
            raise ValueError("token keys: configure at least one (--token-key-file)")
        kids = [k.kid for k in keys]
        if len(set(kids)) != len(kids):
            raise ValueError("token keys: the same key is listed twice")
        self.issuer = issuer
        self.ttl_seconds = ttl_seconds
        self._signing = keys[0]
        self.keys: tuple[SigningKey, ...] = tuple(keys)
        self._verifying = KeySet(list(keys))
        self._sealing = _encryption_key(keys[0])
        self._unsealing = KeySet([_encryption_key(k) for k in keys])
        #: Signs the page tokens of the Authenticator's listings (ListSessions),
        #: with a secret every replica derives from the same signing key. A
        #: token from before a key rotation is refused (INVALID_ARGUMENT: start
        #: the listing again).
        self.page_tokens = PageTokenCodec(_derived_secret(keys[0], b"bugless-auth page tokens"))

    def issue(
        self,
        user_id: str,
        authenticator: str,
        *,
        session: tuple[str, float] | None = None,
    ) -> IssuedToken:
        """A signed session token for ``user_id``, naming a new session id (``jti``).

        The caller records the session (:class:`bugless_auth.sessions.SessionStore`)
        before handing the token out: validation refuses a token whose
        session is unknown. With ``session`` (an id and its expiry) the token
        names that recorded session instead, and expires no later than it:
        a certificate's connections share one (``AuthService._session``).
        """
        now = int(time.time())
        expires_at = now + self.ttl_seconds
        session_id = secrets.token_urlsafe(18)
        if session is not None:
            session_id, until = session
            expires_at = min(expires_at, until)
        claims = {
            "iss": self.issuer,
            "sub": user_id,
            "iat": now,
            "exp": int(expires_at),
            "jti": session_id,
            "typ": SESSION_TYPE,
            "amr": authenticator,
        }
        header = {"alg": _algorithm(self._signing), "kid": self._signing.kid}
        token = jwt.encode(header, claims, self._signing, algorithms=_ALGORITHMS)
        return IssuedToken(token, float(int(expires_at)), session_id)

    def verify(self, token: str) -> SessionClaims:
        """Check signature, issuer, type and expiry.

        Raises:
            Unauthenticated: tampered, foreign, from a removed key, or expired.
        """
        try:
            decoded = jwt.decode(token, self._verifying, algorithms=_ALGORITHMS)
        except (JoseError, ValueError, TypeError) as exc:
            raise Unauthenticated(INVALID_TOKEN, reason="INVALID_TOKEN") from exc
        claims: Mapping[str, Any] = decoded.claims
        if (
            claims.get("iss") != self.issuer
            or claims.get("typ") != SESSION_TYPE
            or not isinstance(claims.get("sub"), str)
            or not isinstance(claims.get("exp"), int)
        ):
            raise Unauthenticated(INVALID_TOKEN, reason="INVALID_TOKEN")
        if claims["exp"] <= time.time():
            raise Unauthenticated(EXPIRED_TOKEN, reason="TOKEN_EXPIRED")
        return SessionClaims(
            user_id=claims["sub"],
            authenticator=str(claims.get("amr", "")),
            expires_at=float(claims["exp"]),
            token_id=str(claims.get("jti", "")),
        )

    def seal_flow(self, data: Mapping[str, str], ttl_seconds: float = 600.0) -> str:
        """Encrypt and authenticate OIDC flow data (state, nonce, PKCE verifier)."""
        payload = json.dumps({"d": dict(data), "exp": time.time() + ttl_seconds}).encode()
        header = {**_FLOW_ENCRYPTION, "kid": self._sealing.kid}
        return jwe.encrypt_compact(header, payload, self._sealing)

    def open_flow(self, sealed: str) -> dict[str, str]:
        """Decrypt flow data sealed by :meth:`seal_flow` on any replica.

        Raises:
            Unauthenticated: tampered, foreign or older than ten minutes.
        """
        try:
            plain = jwe.decrypt_compact(sealed, self._unsealing).plaintext
            payload = json.loads(plain or b"")
            data, expires = payload["d"], float(payload["exp"])
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise Unauthenticated("flow_state is invalid: start signing in again") from exc
        if expires <= time.time():
            raise Unauthenticated("flow_state has expired: start signing in again")
        return {str(k): str(v) for k, v in data.items()}
