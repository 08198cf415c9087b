"""The settings of one WebFrontend replica, filled from flags and ``BUGLESS_*`` env.

Every replica of a deployment gets the same settings (the same session keys
above all): the web tier is stateless, so any replica serves any request.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field

from bugless_core.clients import ServiceAddress


@dataclass(frozen=True)
class WebSettings:
    """How a WebFrontend replica is configured.

    Attributes:
        model: Where the Model service listens.
        auth: Where the Authenticator service listens.
        session_keys: Secrets for the session cookie, newest first. The first
            encrypts new cookies; every one still decrypts (key rotation: add
            the new key in front, drop the old one after the session lifetime).
        host: Address uvicorn binds.
        port: HTTP port.
        public_url: External base URL (``https://bugs.example.com``, or with a
            path prefix a proxy strips, ``https://example.com/bugs``); the OIDC
            redirect URI is ``<public_url>/signin/oidc/callback`` and must be
            registered at the provider exactly so. Empty: derived from each
            request's Host (fine on one host name; behind a proxy that
            rewrites Host or terminates TLS, set it). A trailing slash is
            dropped; a query, fragment or credentials are refused, and so is
            ``http://`` outside ``dev`` (the cookie is ``Secure``: a browser
            on plain HTTP would never send it back to the callback).
        steer_to: While draining, new page loads are redirected (303) here,
            followed by the requested path (another instance or version).
        dev: Development mode: the session cookie drops the ``Secure`` flag so
            plain-HTTP localhost works, and templates reload from disk.
        token_cache_seconds: How long a validated session token is trusted
            without asking the Authenticator again (bounds how late a revoked
            token is noticed).
        component_cache_seconds: How long each caller's view of the component
            tree (paths for list pages, the pickers of the issue forms) is
            reused before asking the Model again. Bounds how late another
            replica's component rename, template or ACL change shows; 0 asks
            on every page.
        user_cache_seconds: How long each person shown on a page (username,
            display name) is reused before asking the Authenticator again.
            Bounds how late a rename shows and how long an old username still
            names the same person in forms; 0 asks on every page.
        call_timeout_seconds: Deadline of each gRPC call to a backend; a page
            never hangs on a backend that stopped answering.
        session_max_age_seconds: Lifetime of the session cookie.
        drain_seconds: After SIGTERM, how long readiness fails (and page loads
            are steered) before the server stops accepting connections.
        grace_seconds: Then how long in-flight requests may take to finish.
        reuse_port: Bind with ``SO_REUSEPORT`` so several web processes share
            the port; the kernel spreads connections over them. One Python
            process uses one core: this is how one machine serves pages on all
            of its cores (in Kubernetes, run more replicas instead).
    """

    model: ServiceAddress
    auth: ServiceAddress
    session_keys: tuple[str, ...]
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""
    steer_to: str = ""
    dev: bool = False
    token_cache_seconds: float = 30.0
    component_cache_seconds: float = 10.0
    user_cache_seconds: float = 5.0
    reuse_port: bool = False
    call_timeout_seconds: float = 10.0
    session_max_age_seconds: int = 14 * 24 * 3600
    drain_seconds: float = 5.0
    grace_seconds: float = 20.0
    page_size: int = field(default=50)
    export_row_cap: int = 10_000

    def __post_init__(self) -> None:
        if self.component_cache_seconds < 0:
            msg = f"--component-cache-seconds {self.component_cache_seconds:g}: give 0 or more"
            raise ValueError(msg)
        if self.user_cache_seconds < 0:
            msg = f"--user-cache-ttl {self.user_cache_seconds:g}: give 0 or more"
            raise ValueError(msg)
        if self.export_row_cap < 1:
            msg = f"--export-row-cap {self.export_row_cap}: give 1 or more"
            raise ValueError(msg)
        if not self.session_keys:
            msg = "at least one session key is needed (--session-key)"
            raise ValueError(msg)
        for key in self.session_keys:
            if len(key) < 16:
                msg = "each session key needs at least 16 characters"
                raise ValueError(msg)
        object.__setattr__(self, "public_url", _checked_public_url(self.public_url, dev=self.dev))
        if self.steer_to and not self.steer_to.startswith(("http://", "https://", "/")):
            msg = f"--steer-to {self.steer_to!r}: give an http(s) URL"
            raise ValueError(msg)


def _checked_public_url(value: str, *, dev: bool) -> str:
    """``value`` without a trailing slash, or ValueError saying what is wrong with it."""
    if not value:
        return ""
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        msg = f"--public-url {value!r}: give the site's base URL, e.g. https://bugs.example.com"
        raise ValueError(msg)
    if parts.query or parts.fragment or parts.username or parts.password:
        msg = f"--public-url {value!r}: no query, fragment or credentials (a base URL only)"
        raise ValueError(msg)
    if parts.scheme == "http" and not dev:
        msg = (
            f"--public-url {value!r}: use https (the session cookie is Secure, so browsers "
            "would not send it over plain HTTP); --dev allows http"
        )
        raise ValueError(msg)
    return value.rstrip("/")
