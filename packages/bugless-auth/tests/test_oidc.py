"""The OIDC backend driven through the real redirect flow against oidc-provider-mock."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, OctKey, RSAKey
from oidc_provider import (
    CLIENT_ID,
    CLIENT_SECRET,
    REDIRECT_URI,
    OidcProvider,
    run_provider,
)

from bugless_auth._oidc_tokens import UnknownSigningKey, validate_id_token
from bugless_auth.oidc import OidcSettings, OpenIdConnectAuthenticator
from bugless_core.errors import InvalidArgument, Unauthenticated, Unavailable
from bugless_testing.ports import refused_port

# oidc-provider-mock's own use of authlib, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:get_jwt_config:DeprecationWarning")

ALICE = {
    "preferred_username": "alice",
    "email": "alice@bugless.test",
    "name": "Alice Liddell",
    "groups": ["engineers", "admins"],
}


def settings_for(issuer: str, **overrides: Any) -> OidcSettings:
    values: dict[str, Any] = {
        "issuer": issuer,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "http_timeout": 2.0,
        **overrides,
    }
    return OidcSettings(**values)


@pytest.fixture
async def oidc(oidc_provider: OidcProvider) -> AsyncIterator[OpenIdConnectAuthenticator]:
    backend = OpenIdConnectAuthenticator(settings_for(oidc_provider.issuer))
    yield backend
    await backend.close()


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


async def test_sign_in_returns_the_identity_with_groups(
    oidc: OpenIdConnectAuthenticator, oidc_provider: OidcProvider
) -> None:
    await oidc_provider.set_user("alice-sub", ALICE)
    start = await oidc.begin(REDIRECT_URI)
    callback = await oidc_provider.sign_in(start.authorization_url, "alice-sub")

    identity = await oidc.complete(
        start.flow_data, callback["code"], callback["state"], REDIRECT_URI
    )

    assert identity.subject == f"oidc:{oidc_provider.issuer}#alice-sub"
    assert identity.username == "alice"
    assert identity.display_name == "Alice Liddell"
    assert identity.email == "alice@bugless.test"
    assert identity.groups == ("admins", "engineers")


async def test_username_falls_back_to_email_then_sub(
    oidc: OpenIdConnectAuthenticator, oidc_provider: OidcProvider
) -> None:
    await oidc_provider.set_user("bob-sub", {"email": "bob@bugless.test"})
    await oidc_provider.set_user("opaque-sub", {})
    usernames = []
    for sub in ("bob-sub", "opaque-sub"):
        start = await oidc.begin(REDIRECT_URI)
        callback = await oidc_provider.sign_in(start.authorization_url, sub)
        identity = await oidc.complete(
            start.flow_data, callback["code"], callback["state"], REDIRECT_URI
        )
        usernames.append(identity.username)
        assert identity.groups == ()
    assert usernames == ["bob@bugless.test", "opaque-sub"]


async def test_pkce_s256_is_sent_in_both_legs(
    oidc: OpenIdConnectAuthenticator, oidc_provider: OidcProvider
) -> None:
    await oidc_provider.set_user("alice-sub", ALICE)
    start = await oidc.begin(REDIRECT_URI)
    query = query_of(start.authorization_url)
    assert query["code_challenge_method"] == "S256"
    assert query["state"] == start.flow_data["state"]
    assert query["nonce"] == start.flow_data["nonce"]
    assert "openid" in query["scope"].split()
    callback = await oidc_provider.sign_in(start.authorization_url, "alice-sub")
    await oidc.complete(start.flow_data, callback["code"], callback["state"], REDIRECT_URI)

    (token_request,) = [
        r for r in oidc_provider.token_requests() if r.form.get("code") == callback["code"]
    ]
    verifier = token_request.form["code_verifier"]
    assert 43 <= len(verifier) <= 128
    expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    assert query["code_challenge"] == expected.decode()
    assert token_request.authorization.startswith("Basic ")  # client_secret_basic
    assert "client_secret" not in token_request.form


async def test_each_flow_has_fresh_secrets(oidc: OpenIdConnectAuthenticator) -> None:
    first, second = await oidc.begin(REDIRECT_URI), await oidc.begin(REDIRECT_URI)
    for key in ("state", "nonce", "code_verifier"):
        assert first.flow_data[key] != second.flow_data[key]


async def test_a_tampered_state_is_unauthenticated(
    oidc: OpenIdConnectAuthenticator, oidc_provider: OidcProvider
) -> None:
    await oidc_provider.set_user("alice-sub", ALICE)
    start = await oidc.begin(REDIRECT_URI)
    callback = await oidc_provider.sign_in(start.authorization_url, "alice-sub")
    before = len(oidc_provider.token_requests())

    with pytest.raises(Unauthenticated, match="state"):
        await oidc.complete(
            start.flow_data, callback["code"], callback["state"] + "x", REDIRECT_URI
        )
    other_flow = await oidc.begin(REDIRECT_URI)
    with pytest.raises(Unauthenticated, match="state"):
        await oidc.complete(other_flow.flow_data, callback["code"], callback["state"], REDIRECT_URI)
    assert len(oidc_provider.token_requests()) == before  # the code was never redeemed


async def test_an_id_token_with_another_flows_nonce_is_unauthenticated(
    oidc: OpenIdConnectAuthenticator, oidc_provider: OidcProvider
) -> None:
    await oidc_provider.set_user("alice-sub", ALICE)
    start = await oidc.begin(REDIRECT_URI)
    callback = await oidc_provider.sign_in(start.authorization_url, "alice-sub")
    replayed = {**start.flow_data, "nonce": "nonce-of-another-flow"}

    with pytest.raises(Unauthenticated, match="nonce"):
        await oidc.complete(replayed, callback["code"], callback["state"], REDIRECT_URI)


async def test_a_redeemed_or_made_up_code_is_unauthenticated(
    oidc: OpenIdConnectAuthenticator, oidc_provider: OidcProvider
) -> None:
    await oidc_provider.set_user("alice-sub", ALICE)
    start = await oidc.begin(REDIRECT_URI)
    callback = await oidc_provider.sign_in(start.authorization_url, "alice-sub")
    await oidc.complete(start.flow_data, callback["code"], callback["state"], REDIRECT_URI)

    with pytest.raises(Unauthenticated, match="refused the authorization code"):
        await oidc.complete(start.flow_data, callback["code"], callback["state"], REDIRECT_URI)
    with pytest.raises(Unauthenticated):
        await oidc.complete(start.flow_data, "made-up", callback["state"], REDIRECT_URI)


async def test_an_expired_id_token_from_the_provider_is_unauthenticated() -> None:
    with run_provider(token_max_age=timedelta(minutes=-5)) as provider:
        await provider.set_user("alice-sub", ALICE)
        backend = OpenIdConnectAuthenticator(settings_for(provider.issuer, clock_skew=60))
        try:
            start = await backend.begin(REDIRECT_URI)
            callback = await provider.sign_in(start.authorization_url, "alice-sub")
            with pytest.raises(Unauthenticated, match="exp"):
                await backend.complete(
                    start.flow_data, callback["code"], callback["state"], REDIRECT_URI
                )
        finally:
            await backend.close()


async def test_a_token_signed_by_a_foreign_key_is_refused_after_one_jwks_refresh(
    oidc: OpenIdConnectAuthenticator, oidc_provider: OidcProvider
) -> None:
    await oidc.begin(REDIRECT_URI)  # discovery
    forger = RSAKey.generate_key(2048, parameters={"kid": "forged"})
    now = int(time.time())
    forged = jwt.encode(
        {"alg": "RS256", "kid": "forged"},
        {
            "iss": oidc_provider.issuer,
            "aud": CLIENT_ID,
            "sub": "alice-sub",
            "iat": now,
            "exp": now + 300,
            "nonce": "n",
        },
        forger,
    )
    before = oidc_provider.jwks_fetches()
    with pytest.raises(Unauthenticated, match="key the provider does not publish"):
        await oidc.validate_id_token(forged, nonce="n")
    assert 1 <= oidc_provider.jwks_fetches() - before <= 2  # first fetch + one refresh


async def test_a_provider_that_is_down_is_unavailable() -> None:
    with refused_port() as port:
        backend = OpenIdConnectAuthenticator(settings_for(f"http://127.0.0.1:{port}"))
        try:
            with pytest.raises(Unavailable, match=r"OIDC provider at .* is unreachable"):
                await backend.begin(REDIRECT_URI)
        finally:
            await backend.close()


async def test_a_provider_that_goes_down_mid_flow_is_unavailable() -> None:
    with run_provider() as provider:
        await provider.set_user("alice-sub", ALICE)
        backend = OpenIdConnectAuthenticator(settings_for(provider.issuer))
        start = await backend.begin(REDIRECT_URI)
        callback = await provider.sign_in(start.authorization_url, "alice-sub")
    try:
        with pytest.raises(Unavailable):
            await backend.complete(
                start.flow_data, callback["code"], callback["state"], REDIRECT_URI
            )
    finally:
        await backend.close()


async def test_discovery_naming_another_issuer_is_refused(oidc_provider: OidcProvider) -> None:
    # The mock names whatever host it was reached by, so an impostor document
    # is served from a transport of the test's own.
    def impostor(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"issuer": "https://evil.test", "jwks_uri": "x"})

    backend = OpenIdConnectAuthenticator(
        settings_for(oidc_provider.issuer),
        http=httpx.AsyncClient(transport=httpx.MockTransport(impostor)),
    )
    try:
        with pytest.raises(Unavailable, match=r"names issuer 'https://evil\.test'"):
            await backend.begin(REDIRECT_URI)
    finally:
        await backend.close()


async def test_a_provider_error_page_is_unavailable_not_a_wrong_login() -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>bad gateway</html>")

    backend = OpenIdConnectAuthenticator(
        settings_for("https://idp.bugless.test"),
        http=httpx.AsyncClient(transport=httpx.MockTransport(broken)),
    )
    try:
        with pytest.raises(Unavailable, match="502"):
            await backend.begin(REDIRECT_URI)
    finally:
        await backend.close()


async def test_a_refused_client_is_unavailable_not_a_failed_sign_in() -> None:
    issuer = "https://idp.bugless.test"

    def provider(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/.well-known/openid-configuration":
            return httpx.Response(
                200,
                json={
                    "issuer": issuer,
                    "authorization_endpoint": f"{issuer}/authorize",
                    "token_endpoint": f"{issuer}/token",
                    "jwks_uri": f"{issuer}/jwks",
                },
            )
        return httpx.Response(401, json={"error": "invalid_client"})

    backend = OpenIdConnectAuthenticator(
        settings_for(issuer), http=httpx.AsyncClient(transport=httpx.MockTransport(provider))
    )
    try:
        start = await backend.begin(REDIRECT_URI)
        with pytest.raises(Unavailable, match="check client_id and client_secret"):
            await backend.complete(start.flow_data, "code", start.flow_data["state"], REDIRECT_URI)
    finally:
        await backend.close()


def test_the_module_imports_without_authlib_or_httpx() -> None:
    code = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {"authlib", "httpx"}:
            raise ImportError("not installed")
sys.meta_path.insert(0, Block())
from bugless_auth.oidc import OidcSettings, OpenIdConnectAuthenticator
from bugless_core.errors import FailedPrecondition
try:
    OpenIdConnectAuthenticator(OidcSettings(issuer="https://x", client_id="c"))
except FailedPrecondition as exc:
    assert "bugless-auth[oidc]" in exc.message, exc.message
    print("ok")
"""
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True
    )
    assert result.stdout.strip() == "ok", result.stderr


async def test_settings_accept_flag_and_env_strings(oidc_provider: OidcProvider) -> None:
    backend = await OpenIdConnectAuthenticator.open(
        {
            "issuer": oidc_provider.issuer + "/",
            "client_id": CLIENT_ID,
            "scopes": "openid,email",
            "username_claims": "email sub",
            "http_timeout": "3",
            "label": "Sign in with Example SSO",
            "identity_store": object(),
        }
    )
    try:
        assert backend.settings.scopes == ("openid", "email")
        assert backend.settings.http_timeout == 3.0
        assert backend.display_name == "Sign in with Example SSO"
        start = await backend.begin(REDIRECT_URI)
        assert query_of(start.authorization_url)["scope"] == "openid email"
    finally:
        await backend.close()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"issuer": "ftp://x", "client_id": "c"}, "issuer"),
        ({"issuer": "https://x"}, "client_id"),
        ({"issuer": "https://x", "client_id": "c", "scope": "openid"}, "unknown scope"),
        ({"issuer": "https://x", "client_id": "c", "http_timeout": "soon"}, "http_timeout"),
    ],
)
async def test_bad_settings_name_the_field(config: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        await OpenIdConnectAuthenticator.open(config)


# -- ID-token validation with tokens signed here ---------------------------

ISSUER = "https://idp.bugless.test"


@pytest.fixture(scope="module")
def signing_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "k1"})


def make_token(key: RSAKey, **overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": CLIENT_ID,
        "sub": "s",
        "iat": now,
        "exp": now + 300,
        "nonce": "n",
        **overrides,
    }
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)


def validate(token: str, key: RSAKey) -> dict[str, Any]:
    public = KeySet([RSAKey.import_key(key.as_dict(private=False))])
    return validate_id_token(token, keys=public, issuer=ISSUER, client_id=CLIENT_ID, nonce="n")


def test_a_valid_token_yields_its_claims(signing_key: RSAKey) -> None:
    assert validate(make_token(signing_key), signing_key)["sub"] == "s"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"exp": int(time.time()) - 3600}, "exp"),
        ({"iss": "https://evil.test"}, "iss"),
        ({"aud": "someone-else"}, "aud"),
        ({"aud": [CLIENT_ID, "other"], "azp": "other"}, "azp"),
        ({"nonce": "other"}, "nonce"),
        ({"nonce": None}, "nonce"),
        ({"sub": None}, "sub"),
        ({"iat": int(time.time()) + 3600}, "future"),
    ],
)
def test_invalid_claims_are_unauthenticated(
    signing_key: RSAKey, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(Unauthenticated, match=message):
        validate(make_token(signing_key, **overrides), signing_key)


def test_a_foreign_signature_under_a_known_kid_is_unauthenticated(signing_key: RSAKey) -> None:
    impostor = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    with pytest.raises(Unauthenticated, match="signature"):
        validate(make_token(impostor), signing_key)


def test_an_unknown_kid_asks_for_a_key_refresh(signing_key: RSAKey) -> None:
    other = RSAKey.generate_key(2048, parameters={"kid": "k2"})
    with pytest.raises(UnknownSigningKey):
        validate(make_token(other), signing_key)


def test_unsigned_and_symmetric_tokens_are_refused(signing_key: RSAKey) -> None:
    _, payload, _ = make_token(signing_key).split(".")
    unsigned_header = base64.urlsafe_b64encode(b'{"alg":"none","kid":"k1"}').rstrip(b"=")
    with pytest.raises(Unauthenticated):
        validate(f"{unsigned_header.decode()}.{payload}.", signing_key)

    # HS256 keyed with something the client knows (its secret) proves nothing.
    secret = OctKey.import_key(CLIENT_SECRET.encode() * 2, parameters={"kid": "k1"})
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": CLIENT_ID,
        "sub": "s",
        "iat": now,
        "exp": now + 60,
        "nonce": "n",
    }
    symmetric = jwt.encode({"alg": "HS256", "kid": "k1"}, claims, secret)
    with pytest.raises(Unauthenticated):
        validate_id_token(
            symmetric, keys=KeySet([secret]), issuer=ISSUER, client_id=CLIENT_ID, nonce="n"
        )
