"""Shape checks of the calls issue 16 adds: the change feed, notification settings.

Kept beside :mod:`._validation` (whose helpers they use); the servicer calls
them before the backend sees a request.
"""

from __future__ import annotations

from bugless_core import limits
from bugless_core.model._validation import (
    _fail,
    check_enum,
    check_id,
    check_user_ref,
    require_caller,
)
from bugless_proto import v1

#: ReadFeed: most changes per answer, longest wait for a commit.
MAX_FEED_BATCH = 1000
MAX_FEED_WAIT_MS = 30_000


def check_read_feed(request: v1.ReadFeedRequest) -> None:
    """ReadFeed: a position at or after 0, a bounded batch and wait."""
    require_caller(request.caller)
    check_resume_position(request.after_position)
    if not 0 <= request.max_changes <= MAX_FEED_BATCH:
        raise _fail("max_changes", f"must be between 1 and {MAX_FEED_BATCH} (0: 100)")
    if not 0 <= request.wait_ms <= MAX_FEED_WAIT_MS:
        raise _fail("wait_ms", f"must be between 0 and {MAX_FEED_WAIT_MS} milliseconds")


def check_resume_position(after_position: int) -> None:
    """``after_position`` of ReadFeed or a resumed Watch: 0 or more (the backend checks it)."""
    if after_position < 0:
        raise _fail("after_position", "must be 0 (the feed's start) or a position read before")


#: Channels a person may choose; "none" switches notifications off. Not
#: "webhook": the notifier's webhooks are a component's endpoints, and it has
#: no personal one to deliver to (it mailed a person who chose "webhook").
NOTIFICATION_CHANNELS = ("email", "none")


def check_get_notification_settings(request: v1.GetNotificationSettingsRequest) -> None:
    """GetNotificationSettings: a bounded list of user references."""
    require_caller(request.caller)
    if len(request.user_ids) > limits.MAX_BATCH_GET:
        raise _fail("user_ids", f"at most {limits.MAX_BATCH_GET} people per call")
    for i, user in enumerate(request.user_ids):
        check_user_ref(user, f"user_ids[{i}]", required=True)


def check_update_notification_settings(request: v1.UpdateNotificationSettingsRequest) -> None:
    """UpdateNotificationSettings: known events, channel and digest mode; a version or 0."""
    require_caller(request.caller)
    if request.expected_version < 0:
        raise _fail(
            "expected_version", "must be the settings' version as read (1 or more), or 0: none"
        )
    settings = request.settings or v1.NotificationSettings()
    for i, event in enumerate(settings.disabled_events):
        check_enum(event, f"settings.disabled_events[{i}]", allow_unspecified=False)
    check_enum(settings.digest, "settings.digest")
    if settings.channel and settings.channel not in NOTIFICATION_CHANNELS:
        choices = ", ".join(NOTIFICATION_CHANNELS)
        hint = (
            " (a webhook notifies of a component's issues: `bugless component webhook`)"
            if settings.channel == "webhook"
            else ""
        )
        raise _fail("settings.channel", f"{settings.channel!r} is not one of {choices}{hint}")


#: GetNotificationViews: most entries and candidate recipients per call.
MAX_NOTIFICATION_VIEWS = limits.MAX_NOTIFICATION_VIEWS


def check_get_notification_views(request: v1.GetNotificationViewsRequest) -> None:
    """GetNotificationViews: an issue id, bounded versions and recipients."""
    require_caller(request.caller)
    check_id(request.issue_id, "issue_id")
    if len(request.versions) > MAX_NOTIFICATION_VIEWS:
        raise _fail("versions", f"at most {MAX_NOTIFICATION_VIEWS} entries per call")
    for i, version in enumerate(request.versions):
        if version < 1:
            raise _fail(f"versions[{i}]", "must be a version of the issue (1 or more)")
    for name in ("viewer_assertions", "viewers"):
        if len(getattr(request, name)) > MAX_NOTIFICATION_VIEWS:
            raise _fail(name, f"at most {MAX_NOTIFICATION_VIEWS} recipients per call")
    for i, viewer in enumerate(request.viewers):
        check_user_ref(viewer.user_id, f"viewers[{i}].user_id", required=True)
