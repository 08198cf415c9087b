"""A component's webhook endpoints, managed by bots and scripts.

The notifier owns webhooks (their rows, their sealed secrets, the deliveries)
and decides who may manage them: it checks the role on the component, with the
Model, of the person whose identity assertion the call carries. So the API
only relays, with the caller's assertion (set by :meth:`Gateway.admit
<bugless_api._gateway.Gateway.admit>` as for every Model call); it never
decides access itself, and answers exactly what the notifier answered. The
same four calls back the web's component webhook page.
"""

from __future__ import annotations

from typing import ClassVar

from bugless_api._gateway import Gateway, GatewayService
from bugless_core.grpc import ANY_CLIENT, AccessTable, every_method
from bugless_proto import v1


class WebhooksService(GatewayService, v1.WebhooksBase):
    """Serves ``bugless.v1.Webhooks``."""

    #: Any verified client certificate may ask; the notifier refuses (with the
    #: Model's answer on the component) anyone who is not its admin.
    ACCESS: ClassVar[AccessTable] = every_method("bugless.v1.Webhooks", {ANY_CLIENT})

    def __init__(self, gateway: Gateway) -> None:
        """Serve through ``gateway``."""
        self.gateway = gateway

    async def list_component_webhooks(
        self, message: v1.ListComponentWebhooksRequest
    ) -> v1.ComponentWebhooks:
        """The component's endpoints (secrets as their last 4 characters)."""
        notifier = self.gateway.require_notifier()
        return await self.gateway.model_call(notifier.list_component_webhooks, message)

    async def add_component_webhook(
        self, message: v1.AddComponentWebhookRequest
    ) -> v1.ComponentWebhook:
        """Add an endpoint; its secret is answered as its last 4 characters only."""
        notifier = self.gateway.require_notifier()
        return await self.gateway.model_call(notifier.add_component_webhook, message)

    async def set_component_webhook_enabled(
        self, message: v1.SetComponentWebhookEnabledRequest
    ) -> v1.ComponentWebhook:
        """Enable or disable one endpoint."""
        notifier = self.gateway.require_notifier()
        return await self.gateway.model_call(notifier.set_component_webhook_enabled, message)

    async def delete_component_webhook(
        self, message: v1.DeleteComponentWebhookRequest
    ) -> v1.ComponentWebhooks:
        """Delete one endpoint; answer those left."""
        notifier = self.gateway.require_notifier()
        return await self.gateway.model_call(notifier.delete_component_webhook, message)
