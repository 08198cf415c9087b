"""The pluggy hookimpls of bugless-model-cockroach: registration only."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bugless_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from bugless_core.registry import ModelBackendRegistrar


@hookimpl
def bugless_register_model_backends(register: ModelBackendRegistrar) -> None:
    """Offer the backend as ``--model cockroach``; imported when a Model asks for it."""
    register("cockroach", "bugless_model_cockroach.backend:CockroachBackend")
