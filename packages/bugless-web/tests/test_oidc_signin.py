"""OIDC sign-in over HTTP: the web app, a real Authenticator (oidc backend), the mock provider.

The provider is oidc-provider-mock on loopback; the Authenticator is a
second ``bugless auth serve`` of the session stack started with
``--authenticator local,tls,oidc`` (module-scoped, so other modules do not
wait for it). The browser's part is played by httpx: the app's client keeps
the session cookie, :meth:`OidcProvider.sign_in` submits the provider's form.
"""

from __future__ import annotations

import asyncio
import html
import secrets
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from web_support import PASSWORD, SESSION_KEY, World

from bugless_dev.stack import RunningService
from bugless_testing.oidc_provider import OidcProvider
from bugless_testing.stack import OIDC_LABEL
from bugless_web import WebSettings, create_app

# oidc-provider-mock's own use of authlib, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:get_jwt_config:DeprecationWarning")

PUBLIC_URL = "https://bugs.example.test"
CALLBACK = f"{PUBLIC_URL}/signin/oidc/callback"


def settings_for(world: World, auth: RunningService, public_url: str) -> WebSettings:
    assert auth.address is not None
    return WebSettings(
        model=world.stack.model,
        auth=auth.address,
        session_keys=(SESSION_KEY,),
        public_url=public_url,
        dev=True,
    )


@pytest.fixture
async def oidc_client(
    world: World, bugless_oidc_auth: RunningService
) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """A client of an app that offers OIDC and is published at :data:`PUBLIC_URL`."""
    app = create_app(settings_for(world, bugless_oidc_auth, PUBLIC_URL))
    async with AsyncTestClient(app, base_url="http://testserver.local") as client:
        yield client


async def new_person(provider: OidcProvider, name: str, groups: list[str]) -> str:
    """Register a person at the provider under a fresh ``sub``; return the sub."""
    sub = f"{name.lower().replace(' ', '-')}-{secrets.token_hex(4)}"  # a username: no spaces
    await provider.set_user(
        sub,
        {
            "preferred_username": sub,
            "name": name,
            "email": f"{sub}@example.test",
            "groups": groups,
        },
    )
    return sub


async def start(client: AsyncTestClient[Any], next_url: str = "/") -> str:
    """Follow the sign-in button; return the provider's authorization URL."""
    response = await client.get(f"/signin/oidc/start/oidc?next={next_url}", follow_redirects=False)
    assert response.status_code == 303, response.text
    return str(response.headers["location"])


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


async def test_oidc_sign_in_lands_back_signed_in_with_name_and_groups(
    oidc_client: AsyncTestClient[Any], oidc_provider: OidcProvider
) -> None:
    page = await oidc_client.get("/signin")
    assert OIDC_LABEL in page.text
    sub = await new_person(oidc_provider, "Olga Oidc", ["component-creators", "qa"])

    authorization_url = await start(oidc_client, "/components")
    assert authorization_url.startswith(f"{oidc_provider.issuer}/")
    assert query_of(authorization_url)["redirect_uri"] == CALLBACK
    callback = await oidc_provider.sign_in(authorization_url, sub, redirect_uri=CALLBACK)
    landed = await oidc_client.get("/signin/oidc/callback", params=callback, follow_redirects=False)

    assert landed.status_code == 303, landed.text
    assert landed.headers["location"] == "/components"
    components = await oidc_client.get("/components")
    assert components.status_code == 200
    assert "Olga Oidc" in components.text
    # The groups claim became permissions: component-creators may create one.
    assert 'href="/components/new"' in components.text


async def test_callback_with_a_tampered_state_is_a_401_saying_why(
    oidc_client: AsyncTestClient[Any], oidc_provider: OidcProvider
) -> None:
    sub = await new_person(oidc_provider, "Tamara Tamper", [])
    authorization_url = await start(oidc_client)
    callback = await oidc_provider.sign_in(authorization_url, sub, redirect_uri=CALLBACK)
    tampered = {**callback, "state": callback["state"][:-2] + "xx"}

    response = await oidc_client.get("/signin/oidc/callback", params=tampered)

    assert response.status_code == 401
    assert "state does not match this browser" in response.text
    assert "Tamara" not in response.text
    # The flow is spent: even the genuine callback cannot finish it now.
    again = await oidc_client.get("/signin/oidc/callback", params=callback)
    assert again.status_code == 400
    assert "expired or was opened in another browser" in again.text


async def test_a_callback_cannot_be_replayed_after_signing_in(
    oidc_client: AsyncTestClient[Any], oidc_provider: OidcProvider
) -> None:
    sub = await new_person(oidc_provider, "Rita Replay", [])
    authorization_url = await start(oidc_client)
    callback = await oidc_provider.sign_in(authorization_url, sub, redirect_uri=CALLBACK)
    first = await oidc_client.get("/signin/oidc/callback", params=callback, follow_redirects=False)
    assert first.status_code == 303

    replay = await oidc_client.get("/signin/oidc/callback", params=callback)

    assert replay.status_code == 400
    assert "expired or was opened in another browser" in replay.text


async def test_provider_refusal_is_a_401_with_its_reason_and_ends_the_flow(
    oidc_client: AsyncTestClient[Any],
) -> None:
    authorization_url = await start(oidc_client)
    state = query_of(authorization_url)["state"]

    refused = await oidc_client.get(
        "/signin/oidc/callback",
        params={"error": "access_denied", "error_description": "<b>user said no</b>"},
    )

    assert refused.status_code == 401
    assert "access_denied (&lt;b&gt;user said no&lt;/b&gt;)" in refused.text
    late = await oidc_client.get("/signin/oidc/callback", params={"code": "x", "state": state})
    assert late.status_code == 400


async def test_a_provider_error_link_without_a_flow_shows_none_of_its_text(
    oidc_client: AsyncTestClient[Any],
) -> None:
    """A link anyone can write must not put its words on this site's sign-in page."""
    lure = "Your account is locked. Call the help desk at +1 555 0100 with your password"
    link = await oidc_client.get(
        "/signin/oidc/callback", params={"error": "account_locked", "error_description": lure}
    )

    assert link.status_code == 400
    assert "expired or was opened in another browser" in link.text
    assert "help desk" not in link.text
    assert "account_locked" not in link.text


async def test_a_flow_begun_under_another_public_url_is_refused(
    world: World,
    bugless_oidc_auth: RunningService,
    oidc_client: AsyncTestClient[Any],
    oidc_provider: OidcProvider,
) -> None:
    """The redirect URI is sealed into the flow: a replica published elsewhere cannot finish it."""
    sub = await new_person(oidc_provider, "Petra Proxy", [])
    authorization_url = await start(oidc_client)
    callback = await oidc_provider.sign_in(authorization_url, sub, redirect_uri=CALLBACK)
    other = create_app(settings_for(world, bugless_oidc_auth, "https://elsewhere.example.test"))
    async with AsyncTestClient(other, base_url="http://testserver.local") as elsewhere:
        elsewhere.cookies = oidc_client.cookies  # the same browser, the same session key

        response = await elsewhere.get("/signin/oidc/callback", params=callback)

    assert response.status_code == 401
    assert "another sign-in" in response.text


async def test_without_public_url_the_redirect_uri_is_this_request_s_own(
    world: World, bugless_oidc_auth: RunningService, oidc_provider: OidcProvider
) -> None:
    app = create_app(settings_for(world, bugless_oidc_auth, ""))
    async with AsyncTestClient(app, base_url="http://bugs.internal:8080") as client:
        sub = await new_person(oidc_provider, "Nina Nourl", [])
        authorization_url = await start(client)
        redirect_uri = query_of(authorization_url)["redirect_uri"]
        assert redirect_uri == "http://bugs.internal:8080/signin/oidc/callback"
        callback = await oidc_provider.sign_in(authorization_url, sub, redirect_uri=redirect_uri)
        landed = await client.get("/signin/oidc/callback", params=callback)
        assert landed.status_code == 200
        assert "Nina Nourl" in landed.text


@pytest.mark.parametrize(
    ("public_url", "dev", "expected"),
    [
        ("https://bugs.example.com/", False, "https://bugs.example.com"),
        ("https://example.com/bugs/", False, "https://example.com/bugs"),
        ("http://127.0.0.1:8080", True, "http://127.0.0.1:8080"),
        ("", False, ""),
    ],
)
def test_public_url_is_normalised(public_url: str, dev: bool, expected: str, world: World) -> None:
    settings = WebSettings(
        model=world.stack.model,
        auth=world.stack.auth,
        session_keys=(SESSION_KEY,),
        public_url=public_url,
        dev=dev,
    )
    assert settings.public_url == expected


@pytest.mark.parametrize(
    ("public_url", "dev", "complaint"),
    [
        ("bugs.example.com", False, "base URL"),
        ("https://bugs.example.com/?x=1", False, "no query"),
        ("https://user:pw@bugs.example.com", False, "credentials"),
        ("http://bugs.example.com", False, "use https"),
    ],
)
def test_bad_public_url_is_refused_at_start(
    public_url: str, dev: bool, complaint: str, world: World
) -> None:
    with pytest.raises(ValueError, match=complaint):
        WebSettings(
            model=world.stack.model,
            auth=world.stack.auth,
            session_keys=(SESSION_KEY,),
            public_url=public_url,
            dev=dev,
        )


async def test_an_oidc_session_records_the_browser_s_address(
    world: World, oidc_client: AsyncTestClient[Any], oidc_provider: OidcProvider
) -> None:
    # The web sends the address it saw at the callback, as it does for a
    # password; before, the session recorded none.
    sub = await new_person(oidc_provider, "Addie Address", [])
    callback = await oidc_provider.sign_in(await start(oidc_client), sub, redirect_uri=CALLBACK)
    landed = await oidc_client.get("/signin/oidc/callback", params=callback, follow_redirects=False)
    assert landed.status_code == 303, landed.text

    conn = await asyncpg.connect(
        world.stack.auth_database_url, server_settings={"search_path": "bugless_auth"}
    )
    try:
        addresses = await conn.fetch(
            "SELECT s.client_address FROM sessions s JOIN users u USING (user_id) "
            "WHERE u.username = $1",
            sub,
        )
    finally:
        await conn.close()
    assert [a["client_address"] for a in addresses] == ["testclient"]


async def test_a_name_another_backend_s_user_holds_is_told_and_ends_the_flow(
    world: World, oidc_client: AsyncTestClient[Any], oidc_provider: OidcProvider
) -> None:
    # The local "olaf-<tag>" holds the name the provider gives, but for
    # case: the Authenticator refuses (FAILED_PRECONDITION). Before, that
    # was the bare error page and the flow stayed in the cookie.
    tag = secrets.token_hex(3)
    await asyncio.to_thread(world.stack.add_user, f"olaf-{tag}", PASSWORD)
    sub = f"sub-{secrets.token_hex(4)}"
    await oidc_provider.set_user(sub, {"preferred_username": f"OLAF-{tag.upper()}"})
    callback = await oidc_provider.sign_in(await start(oidc_client), sub, redirect_uri=CALLBACK)

    refused = await oidc_client.get("/signin/oidc/callback", params=callback)

    assert refused.status_code == 409
    shown = html.unescape(refused.text)
    assert "Sign-in did not complete: username" in shown
    assert "already belongs to another bugless user (from local)" in shown
    assert 'name="username"' in refused.text  # the sign-in form, to try another way
    again = await oidc_client.get("/signin/oidc/callback", params=callback)
    assert again.status_code == 400
    assert "expired or was opened in another browser" in again.text


async def test_a_provider_name_that_is_no_username_is_told_and_ends_the_flow(
    oidc_client: AsyncTestClient[Any], oidc_provider: OidcProvider
) -> None:
    name = f"\uff4flga-{secrets.token_hex(3)}"  # a fullwidth first letter
    sub = f"sub-{secrets.token_hex(4)}"
    await oidc_provider.set_user(sub, {"preferred_username": name})
    callback = await oidc_provider.sign_in(await start(oidc_client), sub, redirect_uri=CALLBACK)

    refused = await oidc_client.get("/signin/oidc/callback", params=callback)

    assert refused.status_code == 401
    shown = html.unescape(refused.text)
    assert f"your username from oidc, {name!r}, cannot be used in bugless" in shown
    assert 'name="username"' in refused.text
    again = await oidc_client.get("/signin/oidc/callback", params=callback)
    assert again.status_code == 400
    assert "expired or was opened in another browser" in again.text
