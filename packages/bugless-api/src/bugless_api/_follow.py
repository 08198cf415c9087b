"""Notifications for bots and people: stars, subscriptions, one's own settings.

Same pattern as :mod:`bugless_api._catalog`: the caller comes from the
certificate. Settings name no other person, so there is nothing to map
between usernames and ids; reading someone else's settings is the notifier's
business (the Model's admin caller), never the API's.
"""

from __future__ import annotations

from typing import ClassVar

from bugless_api._gateway import Gateway, GatewayService, caller_of
from bugless_core.errors import InvalidArgument
from bugless_core.grpc import ANY_CLIENT, AccessTable, every_method
from bugless_proto import v1


class NotificationsService(GatewayService, v1.NotificationsBase):
    """Serves ``bugless.v1.Notifications``."""

    #: Bots are people: any client certificate the client CA verified may call;
    #: everything here is the caller's own (or the Model's ACLs decide).
    ACCESS: ClassVar[AccessTable] = every_method("bugless.v1.Notifications", {ANY_CLIENT})

    def __init__(self, gateway: Gateway) -> None:
        """Serve through ``gateway``."""
        self.gateway = gateway

    async def star_issue(self, message: v1.StarIssueRequest) -> v1.StarIssueResponse:
        """Star or unstar an issue."""
        caller_of(message)
        return await self.gateway.model_call(self.gateway.model.star_issue, message)

    async def set_component_subscription(
        self, message: v1.SetComponentSubscriptionRequest
    ) -> v1.Subscriptions:
        """Subscribe to a component (and its subtree) or stop."""
        caller_of(message)
        return await self.gateway.model_call(self.gateway.model.set_component_subscription, message)

    async def set_saved_search_subscription(
        self, message: v1.SetSavedSearchSubscriptionRequest
    ) -> v1.Subscriptions:
        """Subscribe to a saved search or stop."""
        caller_of(message)
        return await self.gateway.model_call(
            self.gateway.model.set_saved_search_subscription, message
        )

    async def list_subscriptions(self, message: v1.ListSubscriptionsRequest) -> v1.Subscriptions:
        """The caller's subscriptions."""
        caller_of(message)
        return await self.gateway.model_call(self.gateway.model.list_subscriptions, message)

    async def get_notification_settings(
        self, message: v1.GetNotificationSettingsRequest
    ) -> v1.GetNotificationSettingsResponse:
        """The caller's own settings."""
        caller_of(message)
        if message.user_ids:
            msg = "user_ids: leave it empty; the API answers your own settings only"
            raise InvalidArgument(msg, metadata={"field": "user_ids"})
        return await self.gateway.model_call(self.gateway.model.get_notification_settings, message)

    async def update_notification_settings(
        self, message: v1.UpdateNotificationSettingsRequest
    ) -> v1.NotificationSettings:
        """Replace the caller's settings."""
        caller_of(message)
        return await self.gateway.model_call(
            self.gateway.model.update_notification_settings, message
        )

    async def set_issue_mute(self, message: v1.SetIssueMuteRequest) -> v1.NotificationSettings:
        """Mute or unmute an issue."""
        caller_of(message)
        return await self.gateway.model_call(self.gateway.model.set_issue_mute, message)
