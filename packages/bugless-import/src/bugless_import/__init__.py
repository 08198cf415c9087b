"""bugless-import: ``bugless import <source>`` and the built-in importers.

The names below are imported on first use (PEP 562): every bugless process
loads each installed package's plugin, which imports this package, and only
the commands that use the importers' runner and mapping should pay for importing it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bugless_core.lazy import lazy_attribute
from bugless_import.__about__ import __version__

if TYPE_CHECKING:
    from bugless_import.mapping import Mapping, load_mapping
    from bugless_import.report import ImportReport
    from bugless_import.runner import run_import
    from bugless_import.settings import ImportSettings

#: Public name -> the module defining it.
_LAZY = {
    "ImportReport": "bugless_import.report",
    "ImportSettings": "bugless_import.settings",
    "Mapping": "bugless_import.mapping",
    "load_mapping": "bugless_import.mapping",
    "run_import": "bugless_import.runner",
}

__all__ = [
    "ImportReport",
    "ImportSettings",
    "Mapping",
    "__version__",
    "load_mapping",
    "run_import",
]


def __getattr__(name: str) -> Any:
    """Import ``name``'s module on first use (:mod:`bugless_core.lazy`)."""
    return lazy_attribute(__name__, _LAZY, name)
