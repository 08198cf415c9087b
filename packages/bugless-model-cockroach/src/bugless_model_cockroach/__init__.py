"""The CockroachDB Model backend of bugless."""

from __future__ import annotations

from bugless_model_cockroach.__about__ import __version__
from bugless_model_cockroach.backend import CockroachBackend

__all__ = ["CockroachBackend", "__version__"]
