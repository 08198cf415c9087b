"""Signed identity assertions: whom a frontend acts for, as the Authenticator says.

The Model does not trust a ``Caller`` set by whoever connects. The
Authenticator signs a short-lived assertion (a JWS in compact form, algorithm
``Ed25519`` as RFC 9864 names it) when a person or bot authenticates and when
a session is validated; the frontend forwards it with each Model call in the
``bugless-assertion`` metadata (:func:`bugless_core.clients.acting_as`), and
the Model derives the caller from it alone (:class:`AssertionVerifier`). A
stolen frontend certificate therefore reaches the Model as a frontend, but
can act only for the people whose assertions it holds, for minutes.

Claims: ``sub`` (user id), ``grp`` (groups), ``adm`` and ``imp`` (the global
``admin`` and ``import_issues`` permissions), ``sid`` (the session the
assertion was issued for; empty for one issued to a service acting for a user,
see ``IssueAssertion``), ``aud`` (always :data:`AUDIENCE`), ``iss``, ``iat``,
``exp``, and optionally ``scp``: a scoped assertion (:class:`Scope`) is good
for one Model call on one target with one value, e.g. ``{"method":
"SetIssueMute", "issue_id": 7, "muted": true}`` for a one-click unsubscribe
link, and the Model refuses it for anything else (PERMISSION_DENIED, in
:mod:`bugless_core.model._callers`); one without ``scp`` is good for whatever
its person may do. A scoped assertion's header says so
(:data:`SCOPED_ASSERTION_TYPE`), so a Model that predates scopes refuses it
instead of reading it as unscoped. The header names the key (``kid``), so
keys rotate: the Authenticator publishes every key an unexpired assertion
may be signed with (``GetVerificationKeys``), and the Model refetches on an
unknown ``kid``.

This module is the one home of the format: the Authenticator signs with
:func:`sign_assertion`, the Model verifies with :class:`AssertionVerifier`.
Every gRPC client imports it too, for :data:`METADATA_KEY` alone (a
``bugless issue show`` neither signs nor verifies), so cryptography is
imported where a key is parsed or a signature checked, not with the module.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from bugless_core.errors import PermissionDenied, Unauthenticated, Unavailable
from bugless_core.outage import OutageLog
from bugless_proto import v1

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

_log = logging.getLogger("bugless_core.assertions")

#: The metadata key a frontend forwards the assertion in.
METADATA_KEY: Final = "bugless-assertion"
#: The only audience: assertions are for the Model.
AUDIENCE: Final = "bugless-model"
#: The JWS ``typ`` of an assertion, so no other signed object passes as one.
ASSERTION_TYPE: Final = "bugless-assertion"
#: The ``typ`` of a scoped assertion (one with ``scp``): a Model of a release
#: before scopes refuses it as invalid, where it would have ignored ``scp``
#: and taken the assertion for anything its person may do.
SCOPED_ASSERTION_TYPE: Final = "bugless-scoped-assertion"
#: How long an assertion lives by default.
DEFAULT_TTL_SECONDS: Final = 300.0
_ALGORITHM: Final = "Ed25519"
#: Longest assertion the Model reads (a few hundred bytes; groups make it longer).
MAX_ASSERTION_LENGTH: Final = 16 * 1024

_INVALID = "the identity assertion is invalid"
_EXPIRED = "the identity assertion has expired: the frontend must get a new one"
_REVOKED = "the identity assertion's session has ended: sign in again"


@dataclass(frozen=True)
class Scope:
    """The one call a scoped assertion is good for (its ``scp`` claim).

    Attributes:
        method: The Model method's name (``SetIssueMute``).
        fields: The request fields it must carry, with their values
            (``(("issue_id", 7), ("muted", True))``): any other value of
            one of them, or a request without one, is refused.
    """

    method: str
    fields: tuple[tuple[str, int | str | bool], ...]

    def to_claim(self) -> dict[str, int | str | bool]:
        """The ``scp`` claim."""
        return {"method": self.method, **dict(self.fields)}

    def check_method(self, method: str) -> None:
        """Refuse a call of ``method`` unless it is the one this scope allows.

        Raises:
            PermissionDenied: another method; the message names both.
        """
        if method != self.method:
            raise PermissionDenied(
                f"this identity assertion is only good for {self._describe()}, not for {method}",
                reason="ASSERTION_SCOPE",
            )

    def check_request(self, request: Any) -> None:
        """Refuse ``request`` unless each scoped field has its scoped value.

        Raises:
            PermissionDenied: a field with another value (or none); the
                message names it.
        """
        for name, value in self.fields:
            got = getattr(request, name, None)
            # bool is an int: True must not pass for issue_id 1, nor 1 for muted.
            if type(got) is not type(value) or got != value:
                raise PermissionDenied(
                    f"{name}: this identity assertion is only good for {self._describe()}, "
                    f"not {name}={got!r}",
                    reason="ASSERTION_SCOPE",
                    metadata={"field": name},
                )

    def _describe(self) -> str:
        values = ", ".join(f"{name}={value!r}" for name, value in self.fields)
        return f"{self.method}({values})"


def _scope(claim: object) -> Scope | None:
    """The ``scp`` claim as a :class:`Scope`; Unauthenticated if malformed."""
    if claim is None:
        return None
    if not isinstance(claim, dict) or not isinstance(claim.get("method"), str):
        raise Unauthenticated(_INVALID, reason="INVALID_ASSERTION")
    fields = tuple(sorted((k, v) for k, v in claim.items() if k != "method"))
    if not all(isinstance(v, int | str | bool) for _, v in fields):
        raise Unauthenticated(_INVALID, reason="INVALID_ASSERTION")
    return Scope(method=claim["method"], fields=fields)


@dataclass(frozen=True)
class AssertionClaims:
    """What a verified assertion says.

    Attributes:
        user_id: The user it stands for.
        groups: Their groups.
        admin: The global ``admin`` permission.
        import_issues: The global ``import_issues`` permission.
        session_id: The session it was issued for ("" for a service's).
        expires_at: Unix time it stops being accepted.
        key_id: The key that signed it.
        scope: The one call it is good for; ``None`` for any.
    """

    user_id: str
    groups: tuple[str, ...]
    admin: bool
    import_issues: bool
    session_id: str
    expires_at: float
    key_id: str
    scope: Scope | None = None

    def caller(self) -> v1.Caller:
        """The Model caller it stands for."""
        return v1.Caller(
            user_id=self.user_id,
            groups=list(self.groups),
            admin=self.admin,
            import_issues=self.import_issues,
        )


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_id(public_key: Ed25519PublicKey) -> str:
    """A key's id: the first 16 bytes of its raw public key, base64url."""
    return _encode(public_key.public_bytes_raw()[:16])


def sign_assertion(
    key: Ed25519PrivateKey,
    *,
    user_id: str,
    groups: Sequence[str],
    permissions: Collection[str],
    session_id: str,
    issuer: str,
    ttl_seconds: float = DEFAULT_TTL_SECONDS,
    now: float | None = None,
    audience: str = AUDIENCE,
    scope: Scope | None = None,
) -> tuple[str, float]:
    """Sign an assertion for ``user_id``; return it and when it expires.

    With ``scope`` it is good for that one call only (the ``scp`` claim).

    ``now`` and ``audience`` are for tests that need an expired or misdirected
    assertion signed by a real key.
    """
    issued = int(time.time() if now is None else now)
    expires = issued + int(ttl_seconds)
    kind = ASSERTION_TYPE if scope is None else SCOPED_ASSERTION_TYPE
    header = {"alg": _ALGORITHM, "typ": kind, "kid": key_id(key.public_key())}
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": user_id,
        "grp": list(groups),
        "adm": "admin" in permissions,
        "imp": "import_issues" in permissions,
        "sid": session_id,
        "iat": issued,
        "exp": expires,
    }
    if scope is not None:
        claims["scp"] = scope.to_claim()
    signing_input = (
        _encode(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + _encode(json.dumps(claims, separators=(",", ":")).encode())
    )
    signature = key.sign(signing_input.encode("ascii"))
    return f"{signing_input}.{_encode(signature)}", float(expires)


def _parse(assertion: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """Header, claims, signing input and signature; Unauthenticated if malformed."""
    if len(assertion) > MAX_ASSERTION_LENGTH:
        raise Unauthenticated(_INVALID, reason="INVALID_ASSERTION")
    parts = assertion.split(".")
    if len(parts) != 3:
        raise Unauthenticated(_INVALID, reason="INVALID_ASSERTION")
    try:
        header = json.loads(_decode(parts[0]))
        claims = json.loads(_decode(parts[1]))
        signature = _decode(parts[2])
    except (ValueError, binascii.Error) as exc:
        raise Unauthenticated(_INVALID, reason="INVALID_ASSERTION") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise Unauthenticated(_INVALID, reason="INVALID_ASSERTION")
    return header, claims, f"{parts[0]}.{parts[1]}".encode("ascii"), signature


def signing_key_id(assertion: str) -> str:
    """The key id (``kid``) the header of ``assertion`` names, unverified; "" if unreadable.

    For a frontend whose assertion a service refused as invalid: one signed
    with the key a rotation dropped is renewed by asking the Authenticator
    again, and the new one names another key; one that names the same key
    was not refused for its key, and asking again will not help
    (:func:`bugless_core.clients.renewal_helps`).
    """
    try:
        kid = _parse(assertion)[0].get("kid")
    except Unauthenticated:
        return ""
    return kid if isinstance(kid, str) else ""


def names_scoped_type(assertion: str) -> bool:
    """Whether the unverified header of ``assertion`` names :data:`SCOPED_ASSERTION_TYPE`.

    For a method that does not act for a person (its requests carry no
    caller): there only a scoped assertion is checked (verified, then refused
    unless the method is its scope's), and this tells which to verify without
    verifying every other one, which such a method ignores. False if unreadable.
    """
    try:
        return _parse(assertion)[0].get("typ") == SCOPED_ASSERTION_TYPE
    except Unauthenticated:
        return False


def _claims(claims: dict[str, Any], kid: str, *, scoped: bool) -> AssertionClaims:
    groups = claims.get("grp")
    scope = _scope(claims.get("scp"))
    if (
        ("scp" in claims) != scoped
        or (scope is not None) != scoped
        or claims.get("aud") != AUDIENCE
        or not isinstance(claims.get("sub"), str)
        or not claims["sub"]
        or not isinstance(claims.get("exp"), int)
        or not isinstance(groups, list)
        or not all(isinstance(g, str) for g in groups)
        or not isinstance(claims.get("sid", ""), str)
    ):
        raise Unauthenticated(_INVALID, reason="INVALID_ASSERTION")
    return AssertionClaims(
        user_id=claims["sub"],
        groups=tuple(groups),
        admin=claims.get("adm") is True,
        import_issues=claims.get("imp") is True,
        session_id=claims.get("sid", ""),
        expires_at=float(claims["exp"]),
        key_id=kid,
        scope=scope,
    )


#: Fetches the Authenticator's keys and revocations (its ``GetVerificationKeys``).
FetchKeys = Callable[[], Awaitable[v1.VerificationKeys]]


class AssertionVerifier:
    """Verifies assertions for the Model, with the Authenticator's published keys.

    Keys and the list of ended sessions are fetched with ``fetch`` and kept
    for ``refresh_seconds``; an assertion naming an unknown key makes it fetch
    again at once (at most once a second), so a rotated-in key works on its
    first assertion. A verified assertion is cached (by its text, with the key
    that verified it): a repeated one costs a dictionary look-up and the
    expiry, revocation and key checks, never a signature check.
    """

    def __init__(
        self,
        fetch: FetchKeys,
        *,
        refresh_seconds: float = 5.0,
        stale_limit_seconds: float = 60.0,
        max_cached: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Verify with the keys ``fetch`` returns.

        Args:
            fetch: Calls the Authenticator's ``GetVerificationKeys``.
            refresh_seconds: How long keys and revocations are reused; bounds
                how late an ended session's assertions are refused.
            stale_limit_seconds: While the Authenticator cannot be reached,
                the last answer is used for this long, then every assertion
                is refused with UNAVAILABLE (fail closed).
            max_cached: Bound on remembered verified assertions; 0 checks
                the signature of every call (what ``bench.api`` compares
                the cache with).
            clock: Unix time (tests move it).
        """
        self._fetch = fetch
        self._refresh_seconds = refresh_seconds
        self._stale_limit = stale_limit_seconds
        self._max_cached = max_cached
        self._clock = clock
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._revoked: frozenset[str] = frozenset()
        self._fetched_at = float("-inf")
        self._forced_at = float("-inf")
        self._refreshing: asyncio.Task[None] | None = None
        self._verified: OrderedDict[str, AssertionClaims] = OrderedDict()
        # While the Authenticator is away every call tries a refresh: the
        # outage is logged when it starts and ends, not once per call.
        self._outage = OutageLog(
            "refreshing the assertion keys",
            logger=_log,
            meanwhile="using the last ones",
            loop="assertion_keys",
        )

    async def claims(self, assertion: str) -> AssertionClaims:
        """Verify ``assertion`` and return what it says.

        Raises:
            Unauthenticated: malformed, signed by no published key, forged,
                for another audience, expired, or its session has ended.
            Unavailable: the keys could not be fetched for too long.
        """
        now = self._clock()
        if now - self._fetched_at > self._refresh_seconds:
            await self._refresh(now, required=now - self._fetched_at > self._stale_limit)
        cached = self._verified.get(assertion)
        if cached is None:
            cached = await self._verify(assertion, now)
            if self._max_cached > 0:
                self._verified[assertion] = cached
                if len(self._verified) > self._max_cached:
                    self._verified.popitem(last=False)
        elif cached.key_id not in self._keys:
            self._verified.pop(assertion, None)
            raise Unauthenticated(_INVALID, reason="INVALID_ASSERTION")
        if cached.expires_at <= now:
            self._verified.pop(assertion, None)
            raise Unauthenticated(_EXPIRED, reason="ASSERTION_EXPIRED")
        if cached.session_id and cached.session_id in self._revoked:
            raise Unauthenticated(_REVOKED, reason="SESSION_ENDED")
        return cached

    async def _verify(self, assertion: str, now: float) -> AssertionClaims:
        header, claims, signing_input, signature = _parse(assertion)
        kid = header.get("kid")
        kind = header.get("typ")
        if header.get("alg") != _ALGORITHM or kind not in (ASSERTION_TYPE, SCOPED_ASSERTION_TYPE):
            raise Unauthenticated(_INVALID, reason="INVALID_ASSERTION")
        if not isinstance(kid, str):
            raise Unauthenticated(_INVALID, reason="INVALID_ASSERTION")
        key = self._keys.get(kid)
        if key is None and now - self._forced_at >= 1.0:
            self._forced_at = now
            await self._refresh(now, required=False)
            key = self._keys.get(kid)
        if key is None:
            raise Unauthenticated(_INVALID, reason="INVALID_ASSERTION")
        from cryptography.exceptions import InvalidSignature  # noqa: PLC0415 - module docstring

        try:
            key.verify(signature, signing_input)
        except InvalidSignature as exc:
            raise Unauthenticated(_INVALID, reason="INVALID_ASSERTION") from exc
        return _claims(claims, kid, scoped=kind == SCOPED_ASSERTION_TYPE)

    async def _refresh(self, now: float, *, required: bool) -> None:
        """Fetch keys and revocations once, however many calls wait for it."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._fetch_now())
        try:
            await asyncio.shield(self._refreshing)
        except Exception as exc:
            if required:
                raise Unavailable(
                    f"the Authenticator's assertion keys cannot be fetched: {exc}"
                ) from exc
            self._outage.failed(exc)

    async def _fetch_now(self) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
            Ed25519PublicKey,
        )

        answer = await self._fetch()
        keys = {
            item.kid: Ed25519PublicKey.from_public_bytes(item.ed25519_public_key)
            for item in answer.keys
        }
        self._keys = keys
        self._revoked = frozenset(answer.revoked_session_ids)
        self._fetched_at = self._clock()
        self._outage.recovered()


__all__ = [
    "ASSERTION_TYPE",
    "AUDIENCE",
    "DEFAULT_TTL_SECONDS",
    "METADATA_KEY",
    "SCOPED_ASSERTION_TYPE",
    "AssertionClaims",
    "AssertionVerifier",
    "FetchKeys",
    "Scope",
    "key_id",
    "names_scoped_type",
    "sign_assertion",
    "signing_key_id",
]
