"""bugless-web: the bugless web frontend (Litestar + Jinja2, server-rendered)."""

from __future__ import annotations

from bugless_web.__about__ import __version__
from bugless_web.app import create_app
from bugless_web.settings import WebSettings

__all__ = ["WebSettings", "__version__", "create_app"]
