"""A real OpenID provider on loopback: oidc-provider-mock (PyPI) in a thread.

Shared by every package that tests an OIDC sign-in: the Authenticator's own
backend tests drive the flow with :meth:`OidcProvider.sign_in`, the web
frontend's tests send a real browser through the provider's login form.
Enable the session fixture in a conftest with::

    pytest_plugins = ["bugless_testing.oidc_provider"]

oidc-provider-mock is a Flask app built on authlib's server side. It accepts
any client id and secret, lets a test register a user's claims with
``PUT /users/<sub>``, and shows a login form where POSTing ``sub`` authorizes
that user and redirects back with a code (``action=deny`` refuses). It does
not enforce PKCE, so the provider records every request (a small WSGI
middleware) for tests to check that the client *sent* the verifier.

The server runs on ``127.0.0.1`` (not ``localhost``: the issuer is derived
from the Host header, and one spelling keeps it stable).

oidc-provider-mock, werkzeug and httpx are imported when a provider starts or
is called, not when this module is imported: core does not depend on them,
and a conftest that lists this plugin should not fail to load where they are
missing before a test asks for the provider.
"""

from __future__ import annotations

import contextlib
import io
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest

CLIENT_ID = "bugless-test"
CLIENT_SECRET = "bugless-test-secret"
REDIRECT_URI = "https://bugless.test/oidc/callback"


@dataclass
class RecordedRequest:
    """A request the provider received: method, path and form body."""

    method: str
    path: str
    form: dict[str, str]
    authorization: str


@dataclass
class OidcProvider:
    """A running provider and what it has seen.

    Attributes:
        issuer: Base URL and ``iss`` of its tokens.
        requests: Every request received, in order.
    """

    issuer: str
    requests: list[RecordedRequest] = field(default_factory=list)

    async def set_user(self, sub: str, claims: Mapping[str, Any]) -> None:
        """Register (or replace) the claims of a user, keyed by ``sub``."""
        import httpx  # noqa: PLC0415

        async with httpx.AsyncClient() as client:
            response = await client.put(self._user_url(sub), json=dict(claims))
        response.raise_for_status()

    def put_user(self, sub: str, claims: Mapping[str, Any]) -> None:
        """:meth:`set_user` for synchronous tests (Playwright's sync API)."""
        import httpx  # noqa: PLC0415

        httpx.put(self._user_url(sub), json=dict(claims)).raise_for_status()

    def _user_url(self, sub: str) -> str:
        return f"{self.issuer}/users/{quote(sub, safe='')}"

    def token_requests(self) -> list[RecordedRequest]:
        """The requests to the token endpoint (code exchanges), in order."""
        return [r for r in self.requests if r.path == "/oauth2/token"]

    def jwks_fetches(self) -> int:
        """How many times the signing keys were fetched."""
        return sum(r.path == "/jwks" for r in self.requests)

    async def sign_in(
        self, authorization_url: str, sub: str, *, redirect_uri: str = REDIRECT_URI
    ) -> dict[str, str]:
        """Act as the browser: open the login page, submit ``sub``, follow to the callback.

        Returns the query parameters of the redirect back to the client
        (``code`` and ``state``, or ``error``); the redirect must go to
        ``redirect_uri``.
        """
        import httpx  # noqa: PLC0415

        async with httpx.AsyncClient() as browser:
            page = await browser.get(authorization_url)
            assert page.status_code == 200, page.text
            assert 'name="sub"' in page.text  # the mock's login form
            response = await browser.post(authorization_url, data={"sub": sub})
        assert response.status_code in (302, 303), response.text
        location = response.headers["location"]
        assert location.startswith(redirect_uri), location
        return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def _recording(
    app: Callable[..., Iterable[bytes]], provider: OidcProvider
) -> Callable[..., Iterable[bytes]]:
    def middleware(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        form: dict[str, str] = {}
        if environ.get("REQUEST_METHOD") == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(body)
            form = {k: v[0] for k, v in parse_qs(body.decode("latin-1")).items()}
        provider.requests.append(
            RecordedRequest(
                method=str(environ.get("REQUEST_METHOD")),
                path=str(environ.get("PATH_INFO")),
                form=form,
                authorization=str(environ.get("HTTP_AUTHORIZATION", "")),
            )
        )
        return app(environ, start_response)

    return middleware


def _mock_app(token_max_age: timedelta) -> Callable[..., Iterable[bytes]]:
    import authlib.deprecate  # noqa: PLC0415

    with warnings.catch_warnings():
        # The mock imports authlib modules authlib itself now deprecates (and
        # authlib.deprecate forces those warnings on when it is first imported).
        warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)
        import oidc_provider_mock  # type: ignore[import-untyped]  # noqa: PLC0415

    app: Callable[..., Iterable[bytes]] = oidc_provider_mock.app(
        require_nonce=True, access_token_max_age=token_max_age
    )
    return app


@contextlib.contextmanager
def run_provider(*, token_max_age: timedelta = timedelta(hours=1)) -> Iterator[OidcProvider]:
    """Start a provider on a free loopback port; stop it when the block ends.

    ``token_max_age`` sets the lifetime of ID and access tokens (a negative
    one issues tokens that are already expired).
    """
    import werkzeug.serving  # noqa: PLC0415

    provider = OidcProvider(issuer="")
    server = werkzeug.serving.make_server(
        "127.0.0.1", 0, _recording(_mock_app(token_max_age), provider), threaded=True
    )
    provider.issuer = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="oidc-provider-mock"
    )
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="session")
def oidc_provider() -> Iterator[OidcProvider]:
    """The session's provider; tests register their own users on it."""
    with run_provider() as provider:
        yield provider


__all__ = [
    "CLIENT_ID",
    "CLIENT_SECRET",
    "REDIRECT_URI",
    "OidcProvider",
    "RecordedRequest",
    "oidc_provider",
    "run_provider",
]
