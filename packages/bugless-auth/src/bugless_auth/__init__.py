"""bugless-auth: the bugless Authenticator service.

The names below are imported on first use (PEP 562): every bugless process
loads each installed package's plugin, which imports this package, and only
the commands that use the Authenticator's stores and hashing libraries should pay for importing it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bugless_auth.__about__ import __version__
from bugless_core.lazy import lazy_attribute

if TYPE_CHECKING:
    from bugless_auth.local import LocalAuthenticator
    from bugless_auth.service import AuthService
    from bugless_auth.settings import AuthSettings, PasswordHashing, ThrottleSettings
    from bugless_auth.store import IdentityStore, UserRecord
    from bugless_auth.tls import TlsAuthenticator

#: Public name -> the module defining it.
_LAZY = {
    "AuthService": "bugless_auth.service",
    "AuthSettings": "bugless_auth.settings",
    "IdentityStore": "bugless_auth.store",
    "LocalAuthenticator": "bugless_auth.local",
    "PasswordHashing": "bugless_auth.settings",
    "ThrottleSettings": "bugless_auth.settings",
    "TlsAuthenticator": "bugless_auth.tls",
    "UserRecord": "bugless_auth.store",
}

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


def __getattr__(name: str) -> Any:
    """Import ``name``'s module on first use (:mod:`bugless_core.lazy`)."""
    return lazy_attribute(__name__, _LAZY, name)
