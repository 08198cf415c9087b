"""Webhook endpoints in the notifier's schema: what the ``webhook`` channel looks up.

Endpoints are stored apart from the deliveries that name them, so a secret is
held in one row: rotating it (or moving the URL) applies to every delivery
still queued, and the dead-letter list never carries a secret.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from bugless_notify import _queries
from bugless_notify.queue import DEFAULT_SCHEMA
from bugless_notify.webhook import PayloadFormat, WebhookEndpoint


def _endpoint(row: asyncpg.Record) -> WebhookEndpoint:
    return WebhookEndpoint(
        name=row["name"],
        url=row["url"],
        secret=row["secret"],
        payload_format=PayloadFormat(row["payload_format"]),
    )


class WebhookEndpointStore:
    """Create, change, remove and look up endpoints; a ``WebhookEndpointDirectory``.

    Writes take a connection (so an admin page can change an endpoint in its
    own transaction); :meth:`get_endpoint` uses the pool it was given.
    """

    def __init__(self, pool: asyncpg.Pool, schema: str = DEFAULT_SCHEMA) -> None:
        """Look endpoints up through ``pool`` in ``schema``."""
        self._pool = pool
        self.sql = _queries.for_schema(schema)

    async def get_endpoint(self, name: str) -> WebhookEndpoint | None:
        """The endpoint named ``name``, or None."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(self.sql.endpoint_get, name)
        return _endpoint(row) if row is not None else None

    async def put(self, conn: Any, endpoint: WebhookEndpoint) -> None:
        """Create ``endpoint``, or replace the one of the same name."""
        await conn.execute(
            self.sql.endpoint_put,
            endpoint.name,
            endpoint.url,
            endpoint.secret,
            str(endpoint.payload_format),
        )

    async def remove(self, conn: Any, name: str) -> bool:
        """Remove an endpoint; deliveries still naming it become dead letters when tried."""
        status: str = await conn.execute(self.sql.endpoint_delete, name)
        return status.endswith(" 1")

    async def list(self, conn: Any) -> list[WebhookEndpoint]:
        """Every endpoint, by name."""
        return [_endpoint(row) for row in await conn.fetch(self.sql.endpoint_list)]
