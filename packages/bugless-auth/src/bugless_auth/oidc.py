"""The OpenID Connect backend (``bugless-auth[oidc]``: authlib, joserfc, httpx).

The authorization-code flow with PKCE (S256), a ``state`` and a ``nonce``:

1. :meth:`OpenIdConnectAuthenticator.begin` builds the authorization URL and returns
   the state, nonce and PKCE verifier as ``flow_data``; the service signs and
   encrypts them into the opaque ``flow_state`` the browser's session keeps.
   Nothing is stored server side, so any replica can complete any flow.
2. :meth:`OpenIdConnectAuthenticator.complete` checks the returned ``state`` against
   the flow (CSRF), exchanges the code with the verifier, validates the ID
   token (signature via the provider's JWKS, ``iss``, ``aud``, ``exp``, and
   the ``nonce`` that binds it to this flow), then reads userinfo.

The subject is ``oidc:<iss>#<sub>``: OIDC promises ``sub`` is stable and
unique only *within* an issuer, so the issuer is part of the key.

Provider metadata (discovery) and keys are cached; an ID token naming an
unseen key id triggers one JWKS refresh, which is how providers rotate keys.
A provider that cannot be reached is :class:`~bugless_core.errors.Unavailable`;
anything wrong with what the browser or the provider sent is
:class:`~bugless_core.errors.Unauthenticated`.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar, Self

from bugless_core.auth_backend import ExternalIdentity, OidcAuthenticator, OidcStart
from bugless_core.errors import FailedPrecondition, InvalidArgument, Unauthenticated
from bugless_core.setting_files import FileContent, pem_certificates

if TYPE_CHECKING:
    import httpx

    from bugless_auth._oidc_provider import ProviderClient

#: Keys of :attr:`OidcStart.flow_data`; all are required back in complete().
FLOW_KEYS = ("state", "nonce", "code_verifier", "redirect_uri")


@dataclass(frozen=True)
class OidcSettings:
    """Which provider to trust and how to read identities from it.

    Every field can come from a flag or a ``BUGLESS_OIDC_<FIELD>`` variable;
    :meth:`from_mapping` accepts typed values or their string forms.

    Attributes:
        issuer: The provider's issuer URL; discovery is read from
            ``<issuer>/.well-known/openid-configuration`` and must name this
            same issuer (a trailing slash aside).
        client_id: This deployment's client id at the provider.
        client_secret: Its secret, sent with HTTP Basic. Empty for a public
            client, which then relies on PKCE alone.
        scopes: Scopes requested; ``openid`` is always added.
        groups_claim: Claim (ID token or userinfo) holding group names, a list
            or a space separated string. Empty: no groups.
        username_claims: Claims tried in order for the username; the first
            present wins (``sub`` always works but is opaque). A value that
            cannot be a bugless username (``bugless_auth.external_names``)
            refuses the sign-in; the next claim is not tried, so a person's
            name does not change with what their provider fills in.
        label: Text of the sign-in button ("Sign in with Example SSO").
        http_timeout: Seconds for each request to the provider.
        discovery_ttl: Seconds provider metadata and keys are cached.
        clock_skew: Seconds of leeway when checking ``exp`` and ``iat``.
        ca_file: PEM CA bundle for a provider behind a private CA; None uses
            the system store.
    """

    issuer: str
    client_id: str
    client_secret: str = ""
    scopes: tuple[str, ...] = ("openid", "profile", "email")
    groups_claim: str = "groups"
    username_claims: tuple[str, ...] = ("preferred_username", "email", "sub")
    label: str = "Single sign-on"
    http_timeout: float = 10.0
    discovery_ttl: float = 3600.0
    clock_skew: float = 60.0
    ca_file: str | None = None

    def __post_init__(self) -> None:
        if not self.issuer.startswith(("https://", "http://")):
            raise InvalidArgument(f"oidc issuer: {self.issuer!r} is not an http(s) URL")
        if not self.client_id:
            raise InvalidArgument("oidc client_id: required (the id registered at the provider)")
        if not self.username_claims:
            raise InvalidArgument("oidc username_claims: name at least one claim, e.g. sub")
        if self.http_timeout <= 0 or self.discovery_ttl < 0 or self.clock_skew < 0:
            raise InvalidArgument("oidc timeouts: http_timeout > 0, the others >= 0 seconds")

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> OidcSettings:
        """Build settings from flags / env values, refusing unknown string keys.

        Lists may be comma or space separated strings; numbers may be strings.
        Non-string values under unknown keys are objects the service hands
        every backend, and are ignored.
        """
        known = {f.name: str(f.type) for f in fields(cls)}
        unknown = sorted(k for k, v in config.items() if k not in known and isinstance(v, str))
        if unknown:
            raise InvalidArgument(
                f"oidc settings: unknown {', '.join(unknown)}; known are {', '.join(known)}"
            )
        values: dict[str, Any] = {}
        for name, value in config.items():
            if name not in known:
                continue
            kind = known[name]
            if kind.startswith("tuple"):
                parts = value.replace(",", " ").split() if isinstance(value, str) else value
                values[name] = tuple(parts)
            elif kind == "float" and isinstance(value, str):
                try:
                    values[name] = float(value)
                except ValueError:
                    raise InvalidArgument(f"oidc {name}: {value!r} is not a number") from None
            elif kind == "str | None":
                values[name] = value or None
            else:
                values[name] = value
        missing = [n for n in ("issuer", "client_id") if n not in values]
        if missing:
            raise InvalidArgument(f"oidc settings: {', '.join(missing)} required")
        return cls(**values)


class OpenIdConnectAuthenticator(OidcAuthenticator):
    """Signs users in through one OpenID Connect provider.

    One instance serves every concurrent flow: it holds no per-flow state
    (that travels in ``flow_data``), only the HTTP client and the cached
    provider metadata and keys.
    """

    name: ClassVar[str] = "oidc"
    file_options: ClassVar[Mapping[str, FileContent]] = {"ca_file": pem_certificates}

    def __init__(self, settings: OidcSettings, *, http: httpx.AsyncClient | None = None) -> None:
        """Build from settings; ``http`` replaces the HTTP client (tests, proxies)."""
        try:
            from bugless_auth._oidc_provider import ProviderClient  # noqa: PLC0415
        except ImportError as exc:
            raise FailedPrecondition(
                f"the oidc authenticator needs authlib, joserfc and httpx ({exc}): "
                "pip install 'bugless-auth[oidc]'"
            ) from exc
        self.settings = settings
        self._provider: ProviderClient = ProviderClient(settings, http=http)

    @classmethod
    async def open(cls, config: Mapping[str, Any]) -> Self:
        """Build the backend; discovery runs on the first sign-in, not here.

        A provider that is down at start-up must not stop the Authenticator
        (local and LDAP logins still work); it surfaces as ``Unavailable``.
        """
        return cls(OidcSettings.from_mapping(config))

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._provider.close()

    @property
    def display_name(self) -> str:
        """The configured label of the sign-in button."""
        return self.settings.label

    # -- the flow -----------------------------------------------------------

    async def begin(self, redirect_uri: str) -> OidcStart:
        """Return the provider's authorization URL and the flow's secrets.

        Raises:
            Unavailable: discovery failed (the provider is down or misnamed).
        """
        state = secrets.token_urlsafe(32)
        nonce = secrets.token_urlsafe(32)
        code_verifier = secrets.token_urlsafe(64)  # 86 chars; RFC 7636 wants 43-128
        url = await self._provider.authorization_url(
            redirect_uri=redirect_uri, state=state, nonce=nonce, code_verifier=code_verifier
        )
        return OidcStart(
            authorization_url=url,
            flow_data={
                "state": state,
                "nonce": nonce,
                "code_verifier": code_verifier,
                "redirect_uri": redirect_uri,
            },
        )

    async def complete(
        self, flow_data: Mapping[str, str], code: str, state: str, redirect_uri: str
    ) -> ExternalIdentity:
        """Finish a flow begun by :meth:`begin` and say who signed in.

        Raises:
            Unauthenticated: the state is not this flow's, the code is refused,
                or the ID token is invalid, expired, foreign-signed or carries
                another flow's nonce.
            Unavailable: the provider cannot be reached or answers with an
                error of its own (5xx, garbage).
        """
        missing = [k for k in FLOW_KEYS if not flow_data.get(k)]
        if missing:
            raise Unauthenticated(f"the sign-in flow state lacks {', '.join(missing)}; start over")
        if not state or not hmac.compare_digest(flow_data["state"].encode(), state.encode()):
            raise Unauthenticated(
                "the sign-in state does not match this browser's flow; start over"
            )
        if redirect_uri != flow_data["redirect_uri"]:
            raise Unauthenticated("the redirect URI differs from the one the flow began with")
        if not code:
            raise Unauthenticated("the provider returned no authorization code")

        tokens = await self._provider.exchange_code(
            code=code, redirect_uri=redirect_uri, code_verifier=flow_data["code_verifier"]
        )
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise Unauthenticated(
                "the provider's token response has no ID token (is 'openid' allowed?)"
            )
        claims = await self.validate_id_token(id_token, nonce=flow_data["nonce"])
        access_token = tokens.get("access_token")
        userinfo = None
        if isinstance(access_token, str) and access_token:
            userinfo = await self._provider.userinfo(access_token)
        if userinfo is not None:
            if userinfo.get("sub") != claims["sub"]:
                raise Unauthenticated("userinfo describes another subject than the ID token")
            claims = {**userinfo, **claims}
        return self._identity(claims)

    async def validate_id_token(self, id_token: str, *, nonce: str) -> dict[str, Any]:
        """Validate an ID token against the provider's current keys.

        Public so the validation can be exercised with crafted tokens; see
        :func:`bugless_auth._oidc_tokens.validate_id_token` for the checks.

        Raises:
            Unauthenticated: the token is invalid, expired, foreign-signed or
                carries another nonce.
            Unavailable: the provider's keys cannot be fetched.
        """
        return await self._provider.validate_id_token(id_token, nonce=nonce)

    # -- claims to identity -------------------------------------------------

    def _identity(self, claims: Mapping[str, Any]) -> ExternalIdentity:
        s = self.settings
        claim = next(
            (c for c in s.username_claims if isinstance(claims.get(c), str) and claims[c]), "sub"
        )
        username = str(claims[claim])
        display_name = claims.get("name")
        email = claims.get("email")
        return ExternalIdentity(
            subject=f"oidc:{claims['iss']}#{claims['sub']}",
            username=username,
            display_name=display_name if isinstance(display_name, str) else username,
            email=email if isinstance(email, str) else "",
            groups=_groups_of(claims.get(s.groups_claim) if s.groups_claim else None),
            username_from=f"OIDC claim {claim}",
        )


def _groups_of(value: Any) -> tuple[str, ...]:
    """A groups claim as a sorted tuple: a list of names, or one space-separated string."""
    if isinstance(value, str):
        names = value.split()
    elif isinstance(value, list):
        names = [v for v in value if isinstance(v, str)]
    else:
        names = []
    return tuple(sorted({n for n in names if n}))


__all__ = ["OidcSettings", "OpenIdConnectAuthenticator"]
