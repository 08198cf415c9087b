"""bugless-import: ``bugless import <source>`` and the built-in importers."""

from __future__ import annotations

from bugless_import.__about__ import __version__
from bugless_import.mapping import Mapping, load_mapping
from bugless_import.runner import ImportReport, run_import
from bugless_import.settings import ImportSettings

__all__ = [
    "ImportReport",
    "ImportSettings",
    "Mapping",
    "__version__",
    "load_mapping",
    "run_import",
]
