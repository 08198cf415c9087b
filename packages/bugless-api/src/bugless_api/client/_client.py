"""The client class: every call group on one connection."""

from __future__ import annotations

from bugless_api.client._attachments import AttachmentCalls
from bugless_api.client._catalog import ComponentCalls
from bugless_api.client._hotlists import HotlistCalls, SavedSearchCalls
from bugless_api.client._issues import IssueCalls
from bugless_api.client._notifications import NotificationCalls
from bugless_api.client._webhooks import WebhookCalls


class BuglessClient(
    IssueCalls,
    AttachmentCalls,
    ComponentCalls,
    HotlistCalls,
    SavedSearchCalls,
    NotificationCalls,
    WebhookCalls,
):
    """Async client of the bugless public API; use it as an async context manager.

    One public method per call of the API (``bugless.v1`` Account, Issues,
    Components, Hotlists, SavedSearches, Notifications, Webhooks), plus helpers that page through
    lists (``iter_issues``, ``iter_history``, ``all_saved_searches``).
    """
