"""The assertion format and its verifier (end-to-end refusals: bugless-dev trust tests)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bugless_core.assertions import (
    SCOPED_ASSERTION_TYPE,
    AssertionVerifier,
    Scope,
    key_id,
    names_scoped_type,
    sign_assertion,
    signing_key_id,
)
from bugless_core.errors import PermissionDenied, Unauthenticated, Unavailable
from bugless_proto import v1


class _Authenticator:
    """What GetVerificationKeys would answer, and how often it was asked."""

    def __init__(self, *keys: Ed25519PrivateKey) -> None:
        self.keys = list(keys)
        self.revoked: list[str] = []
        self.calls = 0
        self.down = False

    async def fetch(self) -> v1.VerificationKeys:
        self.calls += 1
        if self.down:
            raise ConnectionError("the Authenticator is down")
        return v1.VerificationKeys(
            keys=[
                v1.VerificationKey(
                    kid=key_id(k.public_key()),
                    ed25519_public_key=k.public_key().public_bytes_raw(),
                )
                for k in self.keys
            ],
            revoked_session_ids=list(self.revoked),
        )


class _Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _sign(key: Ed25519PrivateKey, clock: _Clock, **claims: Any) -> str:
    options: dict[str, Any] = {
        "user_id": "u1",
        "groups": ["eng"],
        "permissions": ["admin"],
        "session_id": "s1",
        "issuer": "bugless-auth",
        "now": clock.now,
    }
    options.update(claims)
    assertion, _ = sign_assertion(key, **options)
    return assertion


async def test_a_valid_assertion_gives_its_caller_and_is_verified_once() -> None:
    key, clock = Ed25519PrivateKey.generate(), _Clock()
    auth = _Authenticator(key)
    verifier = AssertionVerifier(auth.fetch, clock=clock)
    assertion = _sign(key, clock)

    first = await verifier.claims(assertion)
    second = await verifier.claims(assertion)

    assert first.caller() == v1.Caller(user_id="u1", groups=["eng"], admin=True)
    assert second is first  # cached: no second signature check
    assert auth.calls == 1


async def test_a_key_rotated_in_is_fetched_on_its_first_assertion() -> None:
    old, new, clock = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate(), _Clock()
    auth = _Authenticator(old)
    verifier = AssertionVerifier(auth.fetch, clock=clock)
    await verifier.claims(_sign(old, clock))

    auth.keys = [new, old]
    claims = await verifier.claims(_sign(new, clock, user_id="u2"))

    assert claims.user_id == "u2"
    assert auth.calls == 2


async def test_a_key_rotated_out_stops_verifying_even_cached_assertions() -> None:
    old, new, clock = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate(), _Clock()
    auth = _Authenticator(old)
    verifier = AssertionVerifier(auth.fetch, clock=clock, refresh_seconds=5)
    assertion = _sign(old, clock)
    await verifier.claims(assertion)

    auth.keys = [new]
    clock.now += 6
    with pytest.raises(Unauthenticated):
        await verifier.claims(assertion)


async def test_expiry_and_ended_sessions_are_checked_on_every_use() -> None:
    key, clock = Ed25519PrivateKey.generate(), _Clock()
    auth = _Authenticator(key)
    verifier = AssertionVerifier(auth.fetch, clock=clock, refresh_seconds=5)
    assertion = _sign(key, clock, ttl_seconds=60)
    await verifier.claims(assertion)

    auth.revoked = ["s1"]
    clock.now += 6
    with pytest.raises(Unauthenticated, match="session has ended"):
        await verifier.claims(assertion)
    auth.revoked = []
    clock.now += 60
    with pytest.raises(Unauthenticated, match="expired"):
        await verifier.claims(assertion)


async def test_without_the_authenticator_for_too_long_everything_is_refused() -> None:
    key, clock = Ed25519PrivateKey.generate(), _Clock()
    auth = _Authenticator(key)
    verifier = AssertionVerifier(auth.fetch, clock=clock, stale_limit_seconds=60)
    assertion = _sign(key, clock, ttl_seconds=3600)
    await verifier.claims(assertion)

    auth.down = True
    clock.now += 30
    assert (await verifier.claims(assertion)).user_id == "u1"  # the last answer still holds
    clock.now += 31
    with pytest.raises(Unavailable):
        await verifier.claims(assertion)


@pytest.mark.parametrize(
    "assertion",
    ["", "a.b", "a.b.c", "e30.e30.", "x" * 20_000],
    ids=["empty", "two-parts", "not-base64-json", "empty-objects", "too-long"],
)
async def test_malformed_assertions_are_unauthenticated(assertion: str) -> None:
    auth = _Authenticator(Ed25519PrivateKey.generate())
    verifier = AssertionVerifier(auth.fetch, clock=_Clock())
    with pytest.raises(Unauthenticated):
        await verifier.claims(assertion)


async def test_without_a_cache_every_call_checks_the_signature() -> None:
    key, clock = Ed25519PrivateKey.generate(), _Clock()
    verifier = AssertionVerifier(_Authenticator(key).fetch, clock=clock, max_cached=0)
    assertion = _sign(key, clock)

    first = await verifier.claims(assertion)
    second = await verifier.claims(assertion)

    assert second == first
    assert second is not first  # verified again, not taken from a cache
    forged = assertion[: assertion.rindex(".") + 1] + "A" * 86
    with pytest.raises(Unauthenticated):
        await verifier.claims(forged)


def test_an_assertions_signing_key_is_read_from_its_header_without_verifying() -> None:
    """What the API compares to tell a rotated key from an assertion refused otherwise:
    each key's own id, and "" for text that is no assertion (never an exception)."""
    old, new, clock = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate(), _Clock()
    assert signing_key_id(_sign(old, clock)) == key_id(old.public_key())
    assert signing_key_id(_sign(new, clock)) == key_id(new.public_key()) != key_id(old.public_key())
    assert signing_key_id("not.an.assertion") == ""
    assert signing_key_id("x" * 10) == ""


def test_a_scoped_assertion_is_told_by_its_header_without_verifying() -> None:
    """What the Model reads on a method without a caller to know which assertion to check:
    the scoped ``typ`` only (any signature), and False for text that is no assertion."""
    key, clock = Ed25519PrivateKey.generate(), _Clock()
    scoped = _sign(key, clock, scope=Scope(method="SetIssueMute", fields=(("issue_id", 7),)))
    assert names_scoped_type(scoped)
    assert names_scoped_type(scoped[: scoped.rindex(".") + 1] + "A" * 86)
    assert not names_scoped_type(_sign(key, clock))
    assert not names_scoped_type("not.an.assertion")
    assert not names_scoped_type("x" * 10)


async def test_a_scoped_assertion_allows_its_one_call_and_names_what_it_refuses() -> None:
    """The Model's refusals on a real stack: bugless-dev trust/test_scoped_assertions."""
    key, clock = Ed25519PrivateKey.generate(), _Clock()
    verifier = AssertionVerifier(_Authenticator(key).fetch, clock=clock)
    scope = Scope(method="SetIssueMute", fields=(("issue_id", 7), ("muted", True)))
    claims = await verifier.claims(_sign(key, clock, scope=scope))
    unscoped = await verifier.claims(_sign(key, clock, user_id="u2"))

    assert claims.scope == scope
    assert unscoped.scope is None
    claims.scope.check_method("SetIssueMute")
    claims.scope.check_request(v1.SetIssueMuteRequest(issue_id=7, muted=True))
    with pytest.raises(
        PermissionDenied, match=r"SetIssueMute\(issue_id=7, muted=True\), not for GetIssue"
    ):
        claims.scope.check_method("GetIssue")
    for request, field in (
        (v1.SetIssueMuteRequest(issue_id=8, muted=True), "issue_id"),
        (v1.SetIssueMuteRequest(issue_id=7, muted=False), "muted"),
        (v1.GetIssueRequest(issue_id=7), "muted"),  # no such field: refused
    ):
        with pytest.raises(PermissionDenied, match=f"^{field}: ") as refused:
            claims.scope.check_request(request)
        assert refused.value.metadata == {"field": field}
    # A bool is an int in Python: True is not issue 1, nor 1 muted=true.
    ones = Scope(method="M", fields=(("issue_id", 1), ("muted", True)))
    with pytest.raises(PermissionDenied):
        ones.check_request(v1.SetIssueMuteRequest(issue_id=True, muted=True))


async def test_a_scope_must_match_the_header_that_says_it_is_scoped() -> None:
    """``scp`` under the plain ``typ`` (what a Model before scopes reads) is invalid.

    As is a scoped ``typ`` without ``scp``; the same header and claims
    re-signed together verify (the control).
    """
    key, clock = Ed25519PrivateKey.generate(), _Clock()
    verifier = AssertionVerifier(_Authenticator(key).fetch, clock=clock)
    scoped = _sign(key, clock, scope=Scope(method="SetIssueMute", fields=(("issue_id", 7),)))
    plain = _sign(key, clock)

    assert json.loads(base64.urlsafe_b64decode(scoped.split(".")[0] + "=="))["typ"] == (
        SCOPED_ASSERTION_TYPE
    )

    def resigned(head: str, body: str, **extra: Any) -> str:
        header = json.loads(base64.urlsafe_b64decode(head.split(".", maxsplit=1)[0] + "=="))
        claims = json.loads(base64.urlsafe_b64decode(body.split(".")[1] + "==")) | extra
        signing_input = ".".join(
            base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()
            for part in (header, claims)
        )
        signature = base64.urlsafe_b64encode(key.sign(signing_input.encode())).rstrip(b"=")
        return f"{signing_input}.{signature.decode()}"

    assert (await verifier.claims(resigned(scoped, scoped))).scope is not None
    assert (await verifier.claims(resigned(plain, plain))).scope is None
    for forged in (
        resigned(plain, scoped),
        resigned(scoped, plain),
        resigned(scoped, plain, scp=None),
        resigned(scoped, plain, scp={"method": 7}),
    ):
        with pytest.raises(Unauthenticated, match="invalid"):
            await verifier.claims(forged)
