"""bugless-model-cockroach: the bugless CockroachDB Model backend."""

from __future__ import annotations

from bugless_model_cockroach.__about__ import __version__

__all__ = ["__version__"]
