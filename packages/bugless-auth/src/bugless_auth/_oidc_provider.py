"""The HTTP side of the OIDC backend: discovery, keys, code exchange, userinfo.

Kept apart from :mod:`bugless_auth.oidc` so that module imports without
httpx, authlib or joserfc: the plugin registers every backend class on every
install, and only a deployment that enables ``oidc`` needs the
``bugless-auth[oidc]`` extra.

Everything a provider does wrong on its side (unreachable, 5xx, not JSON, a
discovery document for another issuer) is
:class:`~bugless_core.errors.Unavailable`; everything that is wrong with the
sign-in itself (a refused code, a bad ID token) is
:class:`~bugless_core.errors.Unauthenticated`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from bugless_auth._oidc_tokens import ASYMMETRIC_ALGORITHMS, UnknownSigningKey, validate_id_token
from bugless_core.errors import Unauthenticated, Unavailable

if TYPE_CHECKING:
    from bugless_auth.oidc import OidcSettings

#: Do not refetch the JWKS more often than this for unknown key ids, so a
#: stream of forged tokens cannot turn us into a load generator.
_JWKS_MIN_REFRESH_SECONDS = 10.0


@dataclass(frozen=True)
class ProviderMetadata:
    """What discovery said, and when it was read."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    algorithms: tuple[str, ...]
    fetched_at: float


class ProviderClient:
    """One provider: cached metadata and keys, and the calls a flow makes.

    Safe to share between concurrent flows: it holds no per-flow state.
    """

    def __init__(self, settings: OidcSettings, *, http: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self._issuer = settings.issuer.rstrip("/")
        self._http = http or httpx.AsyncClient(
            timeout=settings.http_timeout,
            verify=settings.ca_file or True,
            follow_redirects=False,
        )
        self._metadata: ProviderMetadata | None = None
        self._keys: KeySet | None = None
        self._keys_fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()

    async def authorization_url(
        self, *, redirect_uri: str, state: str, nonce: str, code_verifier: str
    ) -> str:
        """The URL to send the browser to, with the S256 challenge of ``code_verifier``."""
        metadata = await self._provider()
        scopes = ["openid", *(s for s in self.settings.scopes if s != "openid")]
        url: str = prepare_grant_uri(
            metadata.authorization_endpoint,
            client_id=self.settings.client_id,
            response_type="code",
            redirect_uri=redirect_uri,
            scope=" ".join(scopes),
            state=state,
            nonce=nonce,
            code_challenge=create_s256_code_challenge(code_verifier),
            code_challenge_method="S256",
        )
        return url

    async def exchange_code(
        self, *, code: str, redirect_uri: str, code_verifier: str
    ) -> dict[str, Any]:
        """Redeem the authorization code at the token endpoint (with the PKCE verifier)."""
        return await self._exchange_code(await self._provider(), code, redirect_uri, code_verifier)

    async def userinfo(self, access_token: str) -> dict[str, Any] | None:
        """Claims from the userinfo endpoint; None when the provider has none."""
        metadata = await self._provider()
        if not metadata.userinfo_endpoint:
            return None
        return await self._userinfo(metadata.userinfo_endpoint, access_token)

    async def validate_id_token(self, id_token: str, *, nonce: str) -> dict[str, Any]:
        """Validate an ID token against the provider's current keys.

        A token naming an unknown key id refreshes the JWKS once (rate
        limited) before it is refused: that is how providers roll keys.

        Raises:
            Unauthenticated: the token is invalid (see
                :func:`bugless_auth._oidc_tokens.validate_id_token`).
            Unavailable: the provider's keys cannot be fetched.
        """
        metadata = await self._provider()
        for attempt in range(2):
            keys = await self._signing_keys(metadata, refresh=attempt > 0)
            try:
                return validate_id_token(
                    id_token,
                    keys=keys,
                    issuer=metadata.issuer,
                    client_id=self.settings.client_id,
                    nonce=nonce,
                    algorithms=metadata.algorithms,
                    leeway=int(self.settings.clock_skew),
                )
            except UnknownSigningKey:
                continue
        raise Unauthenticated("the ID token is signed with a key the provider does not publish")

    def _unavailable(self, what: str, exc: BaseException | None = None) -> Unavailable:
        detail = f": {exc!r}" if exc is not None else ""
        return Unavailable(
            f"the OIDC provider at {self._issuer} is unreachable ({what}{detail}); "
            "try again shortly"
        )

    async def _get_json(self, url: str, what: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = await self._http.get(url, **kwargs)
        except httpx.HTTPError as exc:
            raise self._unavailable(what, exc) from exc
        return self._json_of(response, what)

    def _json_of(self, response: httpx.Response, what: str) -> dict[str, Any]:
        if response.status_code >= 500:
            raise self._unavailable(f"{what} answered {response.status_code}")
        try:
            body = response.json()
        except ValueError as exc:
            raise self._unavailable(f"{what} did not answer JSON", exc) from exc
        if not isinstance(body, dict):
            raise self._unavailable(f"{what} did not answer a JSON object")
        if response.status_code >= 400 and "error" not in body:
            raise self._unavailable(f"{what} answered {response.status_code}")
        return body

    async def _provider(self) -> ProviderMetadata:
        """Discovery metadata, fetched once per ``discovery_ttl``."""
        cached = self._metadata
        if (
            cached is not None
            and time.monotonic() - cached.fetched_at < self.settings.discovery_ttl
        ):
            return cached
        async with self._lock:
            cached = self._metadata
            if (
                cached is not None
                and time.monotonic() - cached.fetched_at < self.settings.discovery_ttl
            ):
                return cached
            url = f"{self._issuer}/.well-known/openid-configuration"
            document = await self._get_json(url, "discovery")
            if "error" in document:
                raise self._unavailable(f"discovery answered {document['error']}")
            issuer = str(document.get("issuer", ""))
            if issuer.rstrip("/") != self._issuer:
                # OIDC Discovery §4.3: a mismatch means the document is not
                # this issuer's (a misconfiguration or an impersonation).
                raise Unavailable(
                    f"the OIDC discovery document at {url} names issuer {issuer!r}, "
                    f"not {self.settings.issuer!r}; check the issuer setting"
                )
            try:
                advertised = document.get("id_token_signing_alg_values_supported") or ["RS256"]
                metadata = ProviderMetadata(
                    issuer=issuer,
                    authorization_endpoint=str(document["authorization_endpoint"]),
                    token_endpoint=str(document["token_endpoint"]),
                    jwks_uri=str(document["jwks_uri"]),
                    userinfo_endpoint=document.get("userinfo_endpoint"),
                    algorithms=tuple(a for a in advertised if a in ASYMMETRIC_ALGORITHMS),
                    fetched_at=time.monotonic(),
                )
            except KeyError as exc:
                raise Unavailable(f"the OIDC discovery document at {url} lacks {exc}") from exc
            if not metadata.algorithms:
                raise Unavailable(
                    f"the OIDC provider at {self._issuer} signs ID tokens only with "
                    f"{', '.join(map(str, advertised))}; bugless accepts asymmetric "
                    "algorithms only (RS256, ES256, EdDSA, ...)"
                )
            self._metadata = metadata
            return metadata

    async def _signing_keys(self, metadata: ProviderMetadata, *, refresh: bool) -> KeySet:
        now = time.monotonic()
        keys = self._keys
        fresh = now - self._keys_fetched_at < self.settings.discovery_ttl
        if keys is not None and fresh and not refresh:
            return keys
        if keys is not None and refresh and now - self._keys_fetched_at < _JWKS_MIN_REFRESH_SECONDS:
            return keys
        async with self._lock:
            if self._keys is not None and self._keys_fetched_at > now:
                return self._keys  # another task refreshed while we waited
            document = await self._get_json(metadata.jwks_uri, "JWKS")
            try:
                keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
            except (JoseError, ValueError, KeyError, TypeError) as exc:
                raise self._unavailable("JWKS holds no usable keys", exc) from exc
            self._keys = keys
            self._keys_fetched_at = time.monotonic()
            return keys

    async def _exchange_code(
        self, metadata: ProviderMetadata, code: str, redirect_uri: str, code_verifier: str
    ) -> dict[str, Any]:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": code_verifier,
        }
        auth = httpx.Auth()  # the base class sends the request unchanged
        if self.settings.client_secret:
            # RFC 6749 §2.3.1: both parts are form-urlencoded before Basic.
            auth = httpx.BasicAuth(
                quote(self.settings.client_id, safe=""), quote(self.settings.client_secret, safe="")
            )
        else:
            form["client_id"] = self.settings.client_id
        try:
            response = await self._http.post(
                metadata.token_endpoint,
                data=form,
                auth=auth,
                headers={"Accept": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise self._unavailable("token endpoint", exc) from exc
        body = self._json_of(response, "token endpoint")
        if body.get("error") in {"invalid_client", "unauthorized_client"}:
            # Our credentials, not the user's sign-in: nothing the user can fix.
            raise Unavailable(
                f"the OIDC provider at {self._issuer} refused this client ({body['error']}); "
                "check client_id and client_secret"
            )
        if "error" in body:
            reason = f"{body['error']} {body.get('error_description') or ''}".strip()
            raise Unauthenticated(f"the provider refused the authorization code: {reason}")
        return body

    async def _userinfo(self, endpoint: str, access_token: str) -> dict[str, Any]:
        body = await self._get_json(
            endpoint, "userinfo", headers={"Authorization": f"Bearer {access_token}"}
        )
        if "error" in body:
            raise Unauthenticated(f"the provider refused the access token: {body['error']}")
        return body
