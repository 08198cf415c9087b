"""Everything bugless_web does with Litestar's private surface, in one place.

``Litestar.__init__`` adds plugins for the libraries it finds installed: it
imports ``litestar.plugins.pydantic`` (pydantic and its v1 compatibility
layer) and ``litestar.plugins.attrs`` to offer their models as handler
types, and ``litestar.plugins.opentelemetry`` (57 modules of OpenTelemetry)
to look for its own tracing middleware. bugless_web uses none of them: its
handlers take and return plain types and msgspec, and tracing wraps the ASGI
handler itself (:mod:`bugless_core.tracing`). Those imports cost the web tier
~10 MiB of resident memory for nothing (bench/JOURNAL.md, "Attachments:
memory"), so :class:`PlainLitestar` overrides the two private static
methods that make them:

* ``Litestar._get_default_plugins(plugins)``: keeps only msgspec's
  dependency-injection plugin (what Litestar always adds);
* ``Litestar._patch_opentelemetry_middleware(config)``: a no-op (it only
  moves Litestar's own OpenTelemetry middleware, which is never configured).

:func:`verify` checks, on import, that both are still there; the test
``tests/test_compat_litestar.py`` runs it and builds the app.
"""

from __future__ import annotations

import importlib.metadata
import inspect
from typing import TYPE_CHECKING

from litestar import Litestar
from litestar.plugins.core import MsgspecDIPlugin

if TYPE_CHECKING:
    from litestar.config.app import AppConfig
    from litestar.plugins import PluginProtocol

__all__ = ["LITESTAR_VERSION", "LitestarSurfaceChanged", "PlainLitestar", "verify"]

#: The installed Litestar, named in every error of this module.
LITESTAR_VERSION = importlib.metadata.version("litestar")

#: The private static methods overridden, and the parameters each is called with.
_OVERRIDDEN = {"_get_default_plugins": ["plugins"], "_patch_opentelemetry_middleware": ["config"]}


class LitestarSurfaceChanged(RuntimeError):
    """The installed Litestar no longer has something bugless_web relies on."""

    def __init__(self, attribute: str, problem: str) -> None:
        """Name the attribute, what is wrong with it, and the installed version."""
        super().__init__(
            f"litestar {LITESTAR_VERSION}: Litestar.{attribute} {problem}; bugless_web "
            "overrides it (see bugless_web._compat_litestar), so adapt that module or pin "
            "litestar back"
        )
        self.attribute = attribute


def verify() -> None:
    """Raise :class:`LitestarSurfaceChanged` unless both overridden methods are as expected."""
    for name, parameters in _OVERRIDDEN.items():
        original = inspect.getattr_static(Litestar, name, None)
        if not isinstance(original, staticmethod):
            raise LitestarSurfaceChanged(name, "is gone or no longer a static method")
        if list(inspect.signature(original.__func__).parameters) != parameters:
            raise LitestarSurfaceChanged(name, f"no longer takes ({', '.join(parameters)})")


class PlainLitestar(Litestar):
    """A Litestar app that imports no plugin for pydantic, attrs or OpenTelemetry."""

    @staticmethod
    def _get_default_plugins(plugins: list[PluginProtocol]) -> list[PluginProtocol]:
        return [*plugins, MsgspecDIPlugin()]

    @staticmethod
    def _patch_opentelemetry_middleware(config: AppConfig) -> AppConfig:
        return config


verify()
