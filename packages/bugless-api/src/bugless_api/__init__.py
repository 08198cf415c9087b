"""bugless-api: the bugless API frontend."""

from __future__ import annotations

from bugless_api.__about__ import __version__

__all__ = ["__version__"]
