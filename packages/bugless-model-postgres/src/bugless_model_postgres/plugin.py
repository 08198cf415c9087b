"""The pluggy hookimpls of bugless-model-postgres: registration only."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bugless_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from bugless_core.registry import ModelBackendRegistrar


@hookimpl
def bugless_register_model_backends(register: ModelBackendRegistrar) -> None:
    """Offer the backend as ``--model postgres``; nothing connects here."""
    from bugless_model_postgres.backend import PostgresBackend  # noqa: PLC0415

    register(PostgresBackend)
