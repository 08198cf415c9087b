"""Webhook endpoints in the notifier's schema: what the ``webhook`` channel looks up.

Endpoints are stored apart from the deliveries that name them, so a secret is
held in one row: rotating it (or moving the URL) applies to every delivery
still queued, and the dead-letter list never carries a secret. The secret is
sealed at rest when the notifier has keys (:mod:`bugless_notify.sealing`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

from bugless_core.errors import FailedPrecondition
from bugless_notify import _queries
from bugless_notify.queue import DEFAULT_SCHEMA
from bugless_notify.sealing import SecretSealer
from bugless_notify.webhook import PayloadFormat, WebhookEndpoint


@dataclass
class ResealReport:
    """What :meth:`WebhookEndpointStore.reseal` found and did."""

    resealed: int = 0
    unsealed: int = 0
    unopened: list[str] = field(default_factory=list)


def _endpoint(row: asyncpg.Record, sealer: SecretSealer) -> WebhookEndpoint:
    return WebhookEndpoint(
        name=row["name"],
        url=row["url"],
        secret=sealer.open(row["secret"]),
        payload_format=PayloadFormat(row["payload_format"]),
        component_id=row["component_id"],
    )


class WebhookEndpointStore:
    """Create, change, remove and look up endpoints; a ``WebhookEndpointDirectory``.

    Writes take a connection (so an admin page can change an endpoint in its
    own transaction); :meth:`get_endpoint` uses the pool it was given.
    """

    def __init__(
        self, pool: asyncpg.Pool, schema: str = DEFAULT_SCHEMA, sealer: SecretSealer | None = None
    ) -> None:
        """Look endpoints up through ``pool`` in ``schema``; secrets sealed by ``sealer``."""
        self._pool = pool
        self.sql = _queries.for_schema(schema)
        self.sealer = sealer or SecretSealer()

    async def get_endpoint(self, name: str) -> WebhookEndpoint | None:
        """The endpoint named ``name``, or None."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(self.sql.endpoint_get, name)
        return _endpoint(row, self.sealer) if row is not None else None

    async def put(self, conn: Any, endpoint: WebhookEndpoint) -> None:
        """Create ``endpoint``, or replace the one of the same name."""
        await conn.execute(
            self.sql.endpoint_put,
            endpoint.name,
            endpoint.url,
            self.sealer.seal(endpoint.secret),
            str(endpoint.payload_format),
        )

    async def remove(self, conn: Any, name: str) -> bool:
        """Remove an endpoint; deliveries still naming it become dead letters when tried."""
        status: str = await conn.execute(self.sql.endpoint_delete, name)
        return status.endswith(" 1")

    async def list(self, conn: Any) -> list[WebhookEndpoint]:
        """Every endpoint, by name."""
        return [_endpoint(row, self.sealer) for row in await conn.fetch(self.sql.endpoint_list)]

    async def reseal(self, conn: Any) -> ResealReport:
        """Seal every secret not sealed with the newest key yet.

        Run at each start: it encrypts secrets written before keys were set
        and moves the others to a new first key (rotation). A row changed
        meanwhile (a new secret) is left as that writer sealed it. A secret
        no configured key opens is reported, not changed: its deliveries fail
        until that key is given again.
        """
        report = ResealReport()
        for row in await conn.fetch(self.sql.endpoint_list):
            stored: str = row["secret"]
            try:
                secret = self.sealer.open(stored)
            except FailedPrecondition:
                report.unopened.append(row["name"])
                continue
            if not self.sealer.enabled:
                report.unsealed += 1
            elif self.sealer.needs_resealing(stored):
                sealed = self.sealer.seal(secret)
                status: str = await conn.execute(
                    self.sql.endpoint_reseal, row["name"], stored, sealed
                )
                report.resealed += status.endswith(" 1")
        return report
