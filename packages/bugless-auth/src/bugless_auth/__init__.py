"""bugless-auth: the bugless Authenticator service."""

from __future__ import annotations

from bugless_auth.__about__ import __version__
from bugless_auth.local import LocalAuthenticator
from bugless_auth.service import AuthService
from bugless_auth.settings import AuthSettings, PasswordHashing, ThrottleSettings
from bugless_auth.store import IdentityStore, UserRecord
from bugless_auth.tls import TlsAuthenticator

__all__ = [
    "AuthService",
    "AuthSettings",
    "IdentityStore",
    "LocalAuthenticator",
    "PasswordHashing",
    "ThrottleSettings",
    "TlsAuthenticator",
    "UserRecord",
    "__version__",
]
