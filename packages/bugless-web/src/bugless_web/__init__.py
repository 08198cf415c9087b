"""bugless-web: the bugless web frontend (Litestar + Jinja2, server-rendered).

The names below are imported on first use (PEP 562): every bugless process
loads each installed package's plugin, which imports this package, and only
the commands that use Litestar, Jinja2 and the whole web stack should pay for importing it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bugless_core.lazy import lazy_attribute
from bugless_web.__about__ import __version__

if TYPE_CHECKING:
    from bugless_web.app import create_app
    from bugless_web.settings import WebSettings

#: Public name -> the module defining it.
_LAZY = {
    "WebSettings": "bugless_web.settings",
    "create_app": "bugless_web.app",
}

__all__ = ["WebSettings", "__version__", "create_app"]


def __getattr__(name: str) -> Any:
    """Import ``name``'s module on first use (:mod:`bugless_core.lazy`)."""
    return lazy_attribute(__name__, _LAZY, name)
