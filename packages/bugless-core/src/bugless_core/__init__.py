"""bugless-core: what every bugless service shares."""

from __future__ import annotations

from bugless_core.__about__ import __version__
from bugless_core.hookspecs import hookimpl, hookspec
from bugless_core.plugins import Plugins, load_plugins

__all__ = ["Plugins", "__version__", "hookimpl", "hookspec", "load_plugins"]
