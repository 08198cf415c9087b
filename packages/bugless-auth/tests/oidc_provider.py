"""The OIDC provider fixture, now shared from ``bugless_testing.oidc_provider``.

Kept so the tests' ``import oidc_provider`` stays short; the provider itself
(oidc-provider-mock in a thread, recording what it receives) lives in core
where the web frontend's tests use it too.
"""

from __future__ import annotations

from bugless_testing.oidc_provider import (
    CLIENT_ID,
    CLIENT_SECRET,
    REDIRECT_URI,
    OidcProvider,
    RecordedRequest,
    oidc_provider,
    run_provider,
)

__all__ = [
    "CLIENT_ID",
    "CLIENT_SECRET",
    "REDIRECT_URI",
    "OidcProvider",
    "RecordedRequest",
    "oidc_provider",
    "run_provider",
]
