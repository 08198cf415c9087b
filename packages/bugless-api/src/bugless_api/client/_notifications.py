"""Star, subscription and notification-settings calls of the client."""

from __future__ import annotations

from collections.abc import Iterable

from bugless_api.client._base import ClientBase
from bugless_core.ids import check_id
from bugless_proto import v1


class NotificationCalls(ClientBase):
    """``bugless.v1.Notifications``."""

    async def star_issue(self, issue_id: int, *, starred: bool = True) -> v1.StarIssueResponse:
        """Star (or with ``starred=False`` unstar) an issue; idempotent, so retried."""
        check_id(issue_id, "issue_id")
        request = v1.StarIssueRequest(issue_id=issue_id, starred=starred)
        return await self._call(self.notifications.star_issue, request, idempotent=True)

    async def subscribe_component(
        self, component_id: int, *, subscribed: bool = True, include_subtree: bool = False
    ) -> v1.Subscriptions:
        """Be notified of a component's issues (and its subtree's); ``subscribed=False`` stops."""
        check_id(component_id, "component_id")
        request = v1.SetComponentSubscriptionRequest(
            component_id=component_id, subscribed=subscribed, include_subtree=include_subtree
        )
        return await self._call(
            self.notifications.set_component_subscription, request, idempotent=True
        )

    async def subscribe_saved_search(
        self, saved_search_id: int, *, subscribed: bool = True
    ) -> v1.Subscriptions:
        """Be notified when issues start or stop matching a saved search."""
        check_id(saved_search_id, "saved_search_id")
        request = v1.SetSavedSearchSubscriptionRequest(
            saved_search_id=saved_search_id, subscribed=subscribed
        )
        return await self._call(
            self.notifications.set_saved_search_subscription, request, idempotent=True
        )

    async def list_subscriptions(self) -> v1.Subscriptions:
        """Your subscriptions."""
        request = v1.ListSubscriptionsRequest()
        return await self._call(self.notifications.list_subscriptions, request, idempotent=True)

    async def get_notification_settings(self) -> v1.NotificationSettings:
        """Your notification settings (the defaults if you never saved any)."""
        request = v1.GetNotificationSettingsRequest()
        response = await self._call(
            self.notifications.get_notification_settings, request, idempotent=True
        )
        return response.settings[0]

    async def update_notification_settings(
        self,
        *,
        disabled_events: Iterable[v1.NotificationEvent] = (),
        channel: str = "email",
        digest: v1.DigestMode = v1.DigestMode.IMMEDIATE,
        notify_own_changes: bool = False,
    ) -> v1.NotificationSettings:
        """Replace your settings (mutes are kept; see :meth:`mute_issue`)."""
        settings = v1.NotificationSettings(
            disabled_events=list(disabled_events),
            channel=channel,
            digest=digest,
            notify_own_changes=notify_own_changes,
        )
        request = v1.UpdateNotificationSettingsRequest(settings=settings)
        return await self._call(
            self.notifications.update_notification_settings, request, idempotent=True
        )

    async def mute_issue(self, issue_id: int, *, muted: bool = True) -> v1.NotificationSettings:
        """Stop (or with ``muted=False`` resume) notifications about one issue."""
        check_id(issue_id, "issue_id")
        request = v1.SetIssueMuteRequest(issue_id=issue_id, muted=muted)
        return await self._call(self.notifications.set_issue_mute, request, idempotent=True)
