"""The client class: every call group on one connection."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from bugless_api._connection_settings import connection_settings
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

    @classmethod
    def from_config(cls, environ: Mapping[str, str] | None = None, **options: Any) -> Self:
        """A client connected as the ``bugless`` commands are: the script's own identity.

        Each setting comes from where the commands take it, in their order
        (:mod:`bugless_api._connection_settings`): the keyword given here
        (``time_zone``), else ``BUGLESS_API``, ``BUGLESS_CERT``, ``BUGLESS_KEY``,
        ``BUGLESS_CA``, ``BUGLESS_TIME_ZONE``, else ``client.toml``
        (``BUGLESS_CLIENT_CONFIG``, else ``~/.config/bugless/client.toml``,
        which ``bugless login`` writes), else the default (the machine's zone).

        Args:
            environ: The variables to read (default: ``os.environ``).
            **options: The other arguments of the constructor (``timeout``,
                ``retry``, ``time_zone`` to override the configured one).

        Raises:
            InvalidArgument: A setting is missing, a file it names does not
                exist, or the certificate has expired (``metadata["origin"]``
                is ``"client"``: nothing was sent).
        """
        found = connection_settings(environ=environ)
        options.setdefault("time_zone", found.time_zone)
        return cls(found.api, found.cert, found.key, found.ca, **options)
