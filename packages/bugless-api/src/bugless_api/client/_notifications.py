"""Star, subscription and notification-settings calls of the client."""

from __future__ import annotations

from collections.abc import Iterable

from bugless_api.client._base import ClientBase, client_mistake, enum_value
from bugless_core.errors import Conflict
from bugless_core.ids import check_id
from bugless_proto import v1

#: Reads and conditional writes :meth:`NotificationCalls.change_notification_settings`
#: makes before giving up on settings that keep changing under it.
SETTINGS_ATTEMPTS = 3


def _settings_key(settings: v1.NotificationSettings) -> tuple[object, ...]:
    """What an update replaces, comparable (the events as a set)."""
    return (
        frozenset(settings.disabled_events),
        settings.channel,
        settings.digest,
        settings.notify_own_changes,
    )


class NotificationCalls(ClientBase):
    """``bugless.v1.Notifications``."""

    async def star_issue(self, issue_id: int, *, starred: bool = True) -> v1.StarIssueResponse:
        """Star (or with ``starred=False`` unstar) an issue; idempotent, so retried.

        A star is yours, not the issue's: no history entry, no new version.
        The answer carries the issue's star count after the call.

        Raises:
            NotFound: No such issue, or one you may not see (unstarring too).
        """
        check_id(issue_id, "issue_id")
        request = v1.StarIssueRequest(issue_id=issue_id, starred=starred)
        return await self._call(self.notifications.star_issue, request, idempotent=True)

    async def subscribe_component(
        self, component_id: int, *, subscribed: bool = True, include_subtree: bool = False
    ) -> v1.Subscriptions:
        """Be notified of a component's issues (and its subtree's); ``subscribed=False`` stops.

        Subscribing again replaces ``include_subtree`` (so a subtree
        subscription can be narrowed to the component alone); stopping one
        you do not have changes nothing.

        Returns:
            All your subscriptions after the call.

        Raises:
            NotFound: No such component, or one you may not see.
        """
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
        """Be notified when issues start or stop matching a saved search.

        Any saved search you may read: yours, or one shared with you.

        Returns:
            All your subscriptions after the call.

        Raises:
            NotFound: No such saved search, or someone else's not shared with you.
        """
        check_id(saved_search_id, "saved_search_id")
        request = v1.SetSavedSearchSubscriptionRequest(
            saved_search_id=saved_search_id, subscribed=subscribed
        )
        return await self._call(
            self.notifications.set_saved_search_subscription, request, idempotent=True
        )

    async def list_subscriptions(self) -> v1.Subscriptions:
        """Your component and saved-search subscriptions (ids; the components by id)."""
        request = v1.ListSubscriptionsRequest()
        return await self._call(self.notifications.list_subscriptions, request, idempotent=True)

    async def get_notification_settings(self) -> v1.NotificationSettings:
        """Your notification settings (the defaults if you never saved any), mutes included."""
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
        expected_version: int = 0,
    ) -> v1.NotificationSettings:
        """Replace your settings (mutes are kept; see :meth:`mute_issue`).

        Every setting is written: one left out returns to its default. To
        change some and keep the rest, use :meth:`change_notification_settings`.
        With ``expected_version`` (the ``version`` of the settings you read)
        the write happens only if nobody changed them since; 0 replaces
        whatever is there. Retried when the API is unavailable: a retry of
        a conditional write that did commit is refused as a conflict (the
        version moved on), never written twice.

        Raises:
            InvalidArgument: An unknown channel (``email``, ``none``).
            Conflict: ``expected_version`` is no longer current (reason
                ``VERSION_CONFLICT``, metadata ``current_version``); nothing
                was written.
        """
        settings = v1.NotificationSettings(
            disabled_events=list(disabled_events),
            channel=channel,
            digest=digest,
            notify_own_changes=notify_own_changes,
        )
        request = v1.UpdateNotificationSettingsRequest(
            settings=settings, expected_version=expected_version
        )
        return await self._call(
            self.notifications.update_notification_settings, request, idempotent=True
        )

    async def change_notification_settings(
        self,
        *,
        enable_events: Iterable[v1.NotificationEvent | str] = (),
        disable_events: Iterable[v1.NotificationEvent | str] = (),
        channel: str | None = None,
        digest: v1.DigestMode | str | None = None,
        notify_own_changes: bool | None = None,
    ) -> tuple[v1.NotificationSettings, v1.NotificationSettings]:
        """Change the settings named, keep the others: read, modify, write at the version read.

        Events and the digest mode may be members or names (``"starred"``,
        ``"my-issues"``, ``"daily"``). When nothing would change, nothing is
        written. The write names the version read, so a change made
        elsewhere (the web settings page, another script) between the read
        and the write is never overwritten: the Model refuses the write, and
        this call reads the settings again and applies the same changes to
        them (what was asked is a change of the named settings, which holds
        as well for the settings as they are now), up to
        :data:`SETTINGS_ATTEMPTS` times. Mutes are never touched (they
        change with :meth:`mute_issue` only).

        Returns:
            The settings the change was applied to (the last read) and the
            settings saved (the same when nothing changed).

        Raises:
            InvalidArgument: An unknown event or digest name, or an event
                both enabled and disabled (origin ``client``: nothing was
                sent); an unknown channel (from the server).
            Conflict: The settings changed elsewhere on every attempt;
                nothing of this call was saved.
        """
        enable = {enum_value(v1.NotificationEvent, e, "enable_events") for e in enable_events}
        disable = {enum_value(v1.NotificationEvent, e, "disable_events") for e in disable_events}
        both = sorted(e.name.lower() for e in enable & disable)
        if both:
            raise client_mistake(f"events both enabled and disabled: {', '.join(both)}")
        wanted_digest = None if digest is None else enum_value(v1.DigestMode, digest, "digest")
        attempt = 0
        while True:
            attempt += 1
            before = await self.get_notification_settings()
            after = v1.NotificationSettings(
                disabled_events=sorted((set(before.disabled_events) - enable) | disable, key=int),
                channel=before.channel if channel is None else channel,
                digest=before.digest if wanted_digest is None else wanted_digest,
                notify_own_changes=(
                    before.notify_own_changes if notify_own_changes is None else notify_own_changes
                ),
            )
            if _settings_key(after) == _settings_key(before):
                return before, before
            try:
                written = await self.update_notification_settings(
                    disabled_events=after.disabled_events,
                    channel=after.channel,
                    digest=after.digest,
                    notify_own_changes=after.notify_own_changes,
                    expected_version=before.version,
                )
            except Conflict as conflict:
                if conflict.reason != "VERSION_CONFLICT" or attempt == SETTINGS_ATTEMPTS:
                    raise Conflict(
                        "your notification settings were changed elsewhere while this change "
                        f"was being applied ({attempt} times); nothing of it was saved: "
                        "run it again",
                        reason=conflict.reason,
                        metadata=conflict.metadata,
                    ) from conflict
                continue
            return before, written

    async def mute_issue(self, issue_id: int, *, muted: bool = True) -> v1.NotificationSettings:
        """Stop (or with ``muted=False`` resume) notifications about one issue.

        A muted issue notifies you of nothing, whatever the reason (assignee,
        star, subscription). Unmuting needs no access to the issue, so a mute
        of an issue you can no longer see can still be lifted.

        Returns:
            Your settings after the call (``muted_issue_ids`` included).

        Raises:
            NotFound: Muting an issue that does not exist or you may not see.
        """
        check_id(issue_id, "issue_id")
        request = v1.SetIssueMuteRequest(issue_id=issue_id, muted=muted)
        return await self._call(self.notifications.set_issue_mute, request, idempotent=True)
