"""bugless-web: the bugless web frontend."""

from __future__ import annotations

from bugless_web.__about__ import __version__

__all__ = ["__version__"]
