"""ID-token validation (OpenID Connect Core §3.1.3.7), kept free of I/O.

A function of the token, the provider's keys and what the flow expects, so
expired, foreign-signed or replayed tokens can be tested with tokens a test
signs itself. The caller (the OIDC backend) fetches the keys and refreshes
them once when a token names a key id it has not seen, which is how
providers roll their signing keys.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Collection
from typing import Any

from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    InvalidKeyIdError,
    JoseError,
)
from joserfc.jwk import KeySet

from bugless_core.errors import Unauthenticated

#: Signature algorithms accepted for ID tokens: asymmetric only. HS256 would
#: make the client secret a signing key and "none" would make anyone the
#: provider, so neither is accepted whatever discovery advertises.
ASYMMETRIC_ALGORITHMS: frozenset[str] = frozenset(
    {
        "RS256",
        "RS384",
        "RS512",
        "PS256",
        "PS384",
        "PS512",
        "ES256",
        "ES384",
        "ES512",
        "EdDSA",
        "Ed25519",
    }
)


class UnknownSigningKey(Exception):
    """The token names a key id the key set lacks: refresh the JWKS and retry."""


def validate_id_token(
    id_token: str,
    *,
    keys: KeySet,
    issuer: str,
    client_id: str,
    nonce: str,
    algorithms: Collection[str] = ASYMMETRIC_ALGORITHMS,
    leeway: int = 60,
    now: int | None = None,
) -> dict[str, Any]:
    """Check an ID token and return its claims.

    Checks the signature against ``keys`` with an allowed algorithm, then
    ``iss`` (exact), ``aud`` (contains ``client_id``; ``azp`` must be the
    client when there are several audiences), ``exp`` and ``iat`` (within
    ``leeway`` seconds), ``sub`` (present) and ``nonce`` (equal, compared in
    constant time: the nonce ties the token to this browser's flow).

    Raises:
        UnknownSigningKey: the token's ``kid`` is not in ``keys``.
        Unauthenticated: anything else is wrong with the token.
    """
    allowed = [alg for alg in algorithms if alg in ASYMMETRIC_ALGORITHMS]
    if not allowed:
        # An empty list would mean "the library's defaults" to joserfc.
        raise Unauthenticated("no acceptable ID-token signature algorithm is configured")
    try:
        token = jwt.decode(id_token, keys, algorithms=allowed)
    except InvalidKeyIdError as exc:
        raise UnknownSigningKey(str(exc)) from exc
    except BadSignatureError as exc:
        raise Unauthenticated(
            "the ID token's signature does not verify with the provider's published keys"
        ) from exc
    except (JoseError, ValueError) as exc:
        raise Unauthenticated(
            f"the ID token is malformed or uses a refused algorithm: {exc}"
        ) from exc

    claims = token.claims
    registry = jwt.JWTClaimsRegistry(
        now=int(time.time()) if now is None else now,
        leeway=leeway,
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": client_id},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
    )
    try:
        registry.validate(claims)
    except ClaimError as exc:
        raise Unauthenticated(f"the ID token is not valid for this sign-in: {exc}") from exc

    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise Unauthenticated("the ID token was issued to another client (azp)")
    token_nonce = claims.get("nonce")
    if not isinstance(token_nonce, str) or not hmac.compare_digest(
        token_nonce.encode(), nonce.encode()
    ):
        raise Unauthenticated("the ID token's nonce does not match this sign-in flow")
    return claims
