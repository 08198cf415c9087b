"""The Python client of the bugless API, for bots and scripts.

::

    async with BuglessClient("bugless-api.example:50053", cert="bot.pem",
                             key="bot.key", ca="ca.pem") as bugless:
        for issue in (await bugless.search_issues("is:open assignee:me p<p2")).issues:
            await bugless.comment(issue.id, "triaged by bot")

People are usernames; the caller is whoever the client certificate maps to.
Failures raise the :mod:`bugless_core.errors` classes (``NotFound``,
``IssueVersionConflict`` with ``current_version``, ``PermissionDenied``, ...).
Reads, and creates (which carry an idempotency key the client generates), are
retried with exponential backoff when the service is unavailable; every call
is retried after the server's ``retry-after`` when it is rate limited, since a
rate-limited call was not executed. :class:`SyncBuglessClient` is the same
client for code without an event loop.
"""

from __future__ import annotations

from bugless_api.client._base import MAX_SESSION_RENEWALS, RetryPolicy, enum_value
from bugless_api.client._client import BuglessClient
from bugless_api.client._custom_values import custom_values
from bugless_api.client._issues import new_idempotency_key
from bugless_api.client._sync import SyncBuglessClient

__all__ = [
    "MAX_SESSION_RENEWALS",
    "BuglessClient",
    "RetryPolicy",
    "SyncBuglessClient",
    "custom_values",
    "enum_value",
    "new_idempotency_key",
]
