"""Webhook endpoints configured per component by its admins (issue 16).

Where they live: in the notifier's own schema, next to the operator-level
endpoints the ``webhook`` channel already looks up by name
(:class:`~bugless_notify.endpoints.WebhookEndpointStore`). So the secret is in
one row, read only by the process that signs with it; the Model never holds
it, and a rotation or a disable applies at once.

Who may change them: the caller is the identity assertion the call carries
(the web forwards the signed-in person's), verified with the Authenticator's
keys; the Model then says the caller's role on the component
(``GetComponent`` made *with that assertion*, so its ACLs decide). Component
admins and global admins may list, add, disable and delete; anyone else gets
PERMISSION_DENIED (NOT_FOUND for a component they may not see). Every change
is written to ``webhook_history`` in the same transaction. A scoped assertion
(a one-click unsubscribe link's, good for one ``SetIssueMute``) is refused
here, PERMISSION_DENIED ``ASSERTION_SCOPE`` as the Model refuses it, before
the Model is asked anything: what it is good for must not depend on which
Model call happens to follow.

What an endpoint sees: the changes of issues in its component (and the
subtree when chosen), as the admin who added it may see them — the consumer
checks each issue with that person's assertion, exactly as for a mail
recipient. So a restricted component (or subcomponent) the admin may not see
sends nothing, an admin who loses access stops the endpoint's deliveries,
and hotlists and components the admin may not see are left out of payloads.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import asyncpg

from bugless_core.assertions import METADATA_KEY, AssertionVerifier
from bugless_core.clients import acting_as, call
from bugless_core.errors import InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from bugless_core.grpc import current_metadata
from bugless_core.migrations import quote_schema
from bugless_notify.addresses import AddressPolicy
from bugless_notify.sealing import SecretSealer
from bugless_notify.webhook import PayloadFormat, WebhookEndpoint, url_origin
from bugless_proto import v1

#: History entries returned with a list.
HISTORY_SHOWN = 100
#: Endpoints one component may have.
MAX_PER_COMPONENT = 20

_WebhookRequest = (
    v1.ListComponentWebhooksRequest
    | v1.AddComponentWebhookRequest
    | v1.SetComponentWebhookEnabledRequest
    | v1.DeleteComponentWebhookRequest
)


@dataclass(frozen=True)
class ComponentEndpoint:
    """An enabled endpoint of a component, as the consumer needs it."""

    name: str
    component_id: int
    include_subtree: bool
    created_by: str


def _shown(row: asyncpg.Record, sealer: SecretSealer) -> v1.ComponentWebhook:
    return v1.ComponentWebhook(
        name=row["name"],
        component_id=row["component_id"],
        url_origin=url_origin(row["url"]),
        secret_hint=sealer.hint(row["secret"]),
        payload_format=row["payload_format"],
        include_subtree=row["include_subtree"],
        enabled=row["enabled"],
        created_by=row["created_by"],
        created_at=row["created_at"],
    )


class ComponentWebhookStore:
    """The SQL of component endpoints and their history."""

    def __init__(self, schema: str, sealer: SecretSealer | None = None) -> None:
        """Tables in ``schema``; secrets sealed by ``sealer``."""
        self.sealer = sealer or SecretSealer()
        s = quote_schema(schema)
        cols = (
            "name, component_id, url, secret, payload_format, include_subtree, enabled, "
            "created_by, created_at"
        )
        self._list = (
            f"SELECT {cols} FROM {s}.webhook_endpoints WHERE component_id = $1 "
            "ORDER BY created_at, name"
        )
        self._one = (
            f"SELECT {cols} FROM {s}.webhook_endpoints WHERE component_id = $1 AND name = $2"
        )
        self._count = f"SELECT count(*) FROM {s}.webhook_endpoints WHERE component_id = $1"
        self._insert = (
            f"INSERT INTO {s}.webhook_endpoints (name, url, secret, payload_format, "
            "component_id, include_subtree, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7) "
            f"RETURNING {cols}"
        )
        self._enable = (
            f"UPDATE {s}.webhook_endpoints SET enabled = $3, updated_at = now() "
            f"WHERE component_id = $1 AND name = $2 RETURNING {cols}"
        )
        self._delete = f"DELETE FROM {s}.webhook_endpoints WHERE component_id = $1 AND name = $2"
        self._history = (
            f"INSERT INTO {s}.webhook_history (component_id, name, action, actor, detail) "
            "VALUES ($1, $2, $3, $4, $5)"
        )
        self._read_history = (
            f"SELECT name, action, actor, detail, at FROM {s}.webhook_history "
            "WHERE component_id = $1 ORDER BY seq DESC LIMIT $2"
        )
        self._enabled = (
            "SELECT name, component_id, include_subtree, created_by "
            f"FROM {s}.webhook_endpoints WHERE enabled AND component_id IS NOT NULL"
        )

    async def enabled(self, conn: Any) -> list[ComponentEndpoint]:
        """Every enabled component endpoint (a small table; read once per feed batch)."""
        return [
            ComponentEndpoint(r["name"], r["component_id"], r["include_subtree"], r["created_by"])
            for r in await conn.fetch(self._enabled)
        ]

    async def listing(self, conn: Any, component_id: int) -> v1.ComponentWebhooks:
        """The component's endpoints and newest history."""
        rows = await conn.fetch(self._list, component_id)
        events = await conn.fetch(self._read_history, component_id, HISTORY_SHOWN)
        return v1.ComponentWebhooks(
            webhooks=[_shown(r, self.sealer) for r in rows],
            history=[
                v1.ComponentWebhookEvent(
                    name=e["name"],
                    action=e["action"],
                    actor=e["actor"],
                    detail=e["detail"],
                    at=e["at"],
                )
                for e in events
            ],
        )

    async def add(
        self, conn: Any, component_id: int, endpoint: WebhookEndpoint, subtree: bool, actor: str
    ) -> v1.ComponentWebhook:
        """Insert ``endpoint`` for the component, with its history line (one transaction)."""
        async with conn.transaction():
            if await conn.fetchval(self._count, component_id) >= MAX_PER_COMPONENT:
                raise InvalidArgument(
                    f"component {component_id} has {MAX_PER_COMPONENT} webhooks already"
                )
            row = await conn.fetchrow(
                self._insert,
                endpoint.name,
                endpoint.url,
                self.sealer.seal(endpoint.secret),
                str(endpoint.payload_format),
                component_id,
                subtree,
                actor,
            )
            detail = f"{url_origin(endpoint.url)} {endpoint.payload_format}" + (
                " +subtree" if subtree else ""
            )
            await conn.execute(self._history, component_id, endpoint.name, "add", actor, detail)
        return _shown(row, self.sealer)

    async def set_enabled(
        self, conn: Any, component_id: int, name: str, enabled: bool, actor: str
    ) -> v1.ComponentWebhook:
        """Enable or disable one endpoint, with its history line."""
        async with conn.transaction():
            row = await conn.fetchrow(self._enable, component_id, name, enabled)
            if row is None:
                raise NotFound(f"component {component_id} has no webhook {name!r}")
            action = "enable" if enabled else "disable"
            await conn.execute(self._history, component_id, name, action, actor, "")
        return _shown(row, self.sealer)

    async def delete(self, conn: Any, component_id: int, name: str, actor: str) -> None:
        """Delete one endpoint (its queued deliveries become dead letters), with history."""
        async with conn.transaction():
            status: str = await conn.execute(self._delete, component_id, name)
            if not status.endswith(" 1"):
                raise NotFound(f"component {component_id} has no webhook {name!r}")
            await conn.execute(self._history, component_id, name, "delete", actor, "")


def new_endpoint_name(component_id: int) -> str:
    """A fresh endpoint name: ``c<component>-<random>`` (fits the name grammar)."""
    return f"c{component_id}-{secrets.token_hex(6)}"


class ComponentWebhookAdmin:
    """The permission-checked half of the four ``*ComponentWebhook*`` RPCs."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        store: ComponentWebhookStore,
        model: v1.ModelStub,
        verifier: AssertionVerifier,
        addresses: AddressPolicy | None = None,
    ) -> None:
        """Check callers with ``verifier`` and ``model``, URLs with ``addresses``."""
        self._addresses = addresses or AddressPolicy()
        self._pool = pool
        self._store = store
        self._model = model
        self._verifier = verifier

    async def _admin_of(self, method: str, message: _WebhookRequest) -> str:
        """The caller's user id, once the Model says they administer the component.

        The one place the notifier reads an assertion. A scoped one is checked
        against ``method`` (and ``message``) here, as the Model checks it, so
        it is refused by the notifier itself rather than by whichever Model
        call would follow (``GetComponent`` today).
        """
        component_id = message.component_id
        if component_id <= 0:
            raise InvalidArgument("component_id: must be a component's id")
        assertion = current_metadata().get(METADATA_KEY)
        if not assertion or not isinstance(assertion, str):
            raise Unauthenticated("component webhooks need the identity assertion of a person")
        claims = await self._verifier.claims(assertion)
        if claims.scope is not None:
            claims.scope.check_method(method)
            claims.scope.check_request(message)
        with acting_as(assertion):
            component = await call(
                self._model.get_component,
                v1.GetComponentRequest(caller=claims.caller(), component_id=component_id),
            )
        if component.caller_role != v1.Role.ADMIN and not claims.admin:
            raise PermissionDenied(
                f"only admins of component {component.path!r} may manage its webhooks"
            )
        return claims.user_id

    async def list(self, message: v1.ListComponentWebhooksRequest) -> v1.ComponentWebhooks:
        """The component's endpoints (secrets shown as their last 4 characters)."""
        await self._admin_of("ListComponentWebhooks", message)
        async with self._pool.acquire() as conn:
            return await self._store.listing(conn, message.component_id)

    async def add(self, message: v1.AddComponentWebhookRequest) -> v1.ComponentWebhook:
        """Add an endpoint; the answer shows the secret's last 4 characters only."""
        actor = await self._admin_of("AddComponentWebhook", message)
        endpoint = WebhookEndpoint(
            name=new_endpoint_name(message.component_id),
            url=message.url.strip(),
            secret=message.secret,
            # A string: WebhookEndpoint makes it the enum or refuses it.
            payload_format=cast("PayloadFormat", message.payload_format or "json"),
            component_id=message.component_id,
        )
        # An address literal (or localhost) is refused now; a name when resolved.
        self._addresses.check_url(endpoint.url)
        async with self._pool.acquire() as conn:
            return await self._store.add(
                conn, message.component_id, endpoint, message.include_subtree, actor
            )

    async def set_enabled(
        self, message: v1.SetComponentWebhookEnabledRequest
    ) -> v1.ComponentWebhook:
        """Enable or disable one endpoint (a disabled one gets no new deliveries)."""
        actor = await self._admin_of("SetComponentWebhookEnabled", message)
        async with self._pool.acquire() as conn:
            return await self._store.set_enabled(
                conn, message.component_id, message.name, message.enabled, actor
            )

    async def delete(self, message: v1.DeleteComponentWebhookRequest) -> v1.ComponentWebhooks:
        """Delete one endpoint; answer what is left."""
        actor = await self._admin_of("DeleteComponentWebhook", message)
        async with self._pool.acquire() as conn:
            await self._store.delete(conn, message.component_id, message.name, actor)
            return await self._store.listing(conn, message.component_id)


def endpoints_for(
    endpoints: Sequence[ComponentEndpoint], component_id: int, ancestors: Sequence[int]
) -> list[ComponentEndpoint]:
    """The endpoints an issue in ``component_id`` (below ``ancestors``) goes to."""
    above = set(ancestors)
    return [
        e
        for e in endpoints
        if e.component_id == component_id or (e.include_subtree and e.component_id in above)
    ]
