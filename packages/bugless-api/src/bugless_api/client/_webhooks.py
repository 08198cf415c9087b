"""A component's webhook endpoints (``bugless.v1.Webhooks``), for its admins."""

from __future__ import annotations

from bugless_api.client._base import ClientBase
from bugless_core.ids import check_id
from bugless_proto import v1


class WebhookCalls(ClientBase):
    """``bugless.v1.Webhooks``: the API relays them to the notifier, which checks your role."""

    async def list_component_webhooks(self, component_id: int) -> v1.ComponentWebhooks:
        """The component's endpoints; secrets come back as their last 4 characters."""
        check_id(component_id, "component_id")
        request = v1.ListComponentWebhooksRequest(component_id=component_id)
        return await self._call(self.webhooks.list_component_webhooks, request, idempotent=True)

    async def add_component_webhook(
        self,
        component_id: int,
        url: str,
        secret: str,
        *,
        payload_format: str = "json",
        include_subtree: bool = False,
    ) -> v1.ComponentWebhook:
        """Add an endpoint that gets a signed POST for each change of the component's issues.

        ``secret`` (32+ characters) keys the ``X-Bugless-Signature`` HMAC; it
        is never answered back (only its last 4 characters). Not retried: a
        second try after a lost answer would add a second endpoint.
        """
        check_id(component_id, "component_id")
        request = v1.AddComponentWebhookRequest(
            component_id=component_id,
            url=url,
            secret=secret,
            payload_format=payload_format,
            include_subtree=include_subtree,
        )
        return await self._call(self.webhooks.add_component_webhook, request, idempotent=False)

    async def set_component_webhook_enabled(
        self, component_id: int, name: str, *, enabled: bool
    ) -> v1.ComponentWebhook:
        """Enable or disable one endpoint (a disabled one gets no new deliveries)."""
        check_id(component_id, "component_id")
        request = v1.SetComponentWebhookEnabledRequest(
            component_id=component_id, name=name, enabled=enabled
        )
        return await self._call(
            self.webhooks.set_component_webhook_enabled, request, idempotent=True
        )

    async def delete_component_webhook(self, component_id: int, name: str) -> v1.ComponentWebhooks:
        """Delete one endpoint; the endpoints left."""
        check_id(component_id, "component_id")
        request = v1.DeleteComponentWebhookRequest(component_id=component_id, name=name)
        return await self._call(self.webhooks.delete_component_webhook, request, idempotent=False)
