"""bugless-auth: the bugless Authenticator service."""

from __future__ import annotations

from bugless_auth.__about__ import __version__

__all__ = ["__version__"]
