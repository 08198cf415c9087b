"""What the backend's call mixins may use of :class:`~bugless_model_postgres.PostgresBackend`.

The backend's calls are grouped in mixins by area (:mod:`._search_calls`,
:mod:`._hotlist_calls`, :mod:`._follow`, :mod:`._edit_calls`, ...). Each of
them reaches the same few members of the backend: its pool, its token codec,
its dialect and retry policy, and ``_write``, the one way to run a write
transaction. They are declared once, here, so every mixin is type-checked
against the same contract and none re-declares it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import asyncpg

    from bugless_core.model.backend import ModelSettings
    from bugless_core.page_tokens import PageTokenCodec
    from bugless_core.transactions import RetryPolicy
    from bugless_model_postgres._context import WriteContext
    from bugless_model_postgres._dialect import Dialect
    from bugless_proto import v1

T = TypeVar("T")


class BackendCalls:
    """The members a call mixin relies on; :class:`PostgresBackend` provides them."""

    if TYPE_CHECKING:
        settings: ModelSettings
        _pool: asyncpg.Pool
        _tokens: PageTokenCodec
        _dialect: Dialect
        _retry_policy: RetryPolicy

        async def _write(
            self,
            caller: v1.Caller | None,
            work: Callable[[WriteContext], Awaitable[T]],
            *,
            one_statement: bool = False,
        ) -> tuple[T, WriteContext]:
            """One write transaction, then the committed entries are announced."""
            ...
