"""Which saved-search subscriptions their subscriber may still read.

A subscription outlives its subscriber's right to read the search: the
owner may take them out of ``readers``, or they may leave the group that
was a reader, and the Model keeps the subscription (it cannot tell who is
in a group: groups come from the Authenticator, with each person's
assertion). Judged anyway, it mailed them the matches of a query they may
no longer read. So whenever :meth:`~bugless_notify._saved_searches.SavedSearchMatcher.prepare`
lists the subscriptions whole, each subscriber who is not the search's
owner is asked, *as themselves* (their assertion, so their groups as the
Authenticator has them now), which saved searches they may read
(``ListSavedSearches``, one walk per subscriber, not per subscription).
A subscription to a search not among them is left out of the round as if
unsubscribed: not judged, its matches forgotten. It is not deleted (the
notifier writes nothing to the Model): should the owner share the search
with them again, it is seeded afresh and mails again from then on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from bugless_core.clients import every_page
from bugless_core.errors import BuglessError, NotFound, PermissionDenied, Unavailable
from bugless_proto import v1

_log = logging.getLogger(__name__)


async def readable(
    acting_model: v1.ModelStub,
    subscriptions: Sequence[v1.SavedSearchSubscription],
    *,
    at_once: int,
) -> list[v1.SavedSearchSubscription]:
    """The ``subscriptions`` whose subscriber may read the saved search now.

    A subscriber's own searches need no call. Everyone else's are checked
    with one ``ListSavedSearches`` walk as the subscriber through
    ``acting_model``, ``at_once`` subscribers at a time. A subscriber who
    gets no assertion (disabled, deleted) reads none. Another refusal is
    logged and their shared subscriptions left out of this listing (tried
    again at the next).

    Raises:
        Unavailable: the Model or the Authenticator is away, as for the
            listing itself: the round is tried again, nothing forgotten.
    """
    shared: dict[str, set[int]] = {}
    for s in subscriptions:
        if s.saved_search is not None and s.saved_search.owner != s.user_id:
            shared.setdefault(s.user_id, set()).add(s.saved_search.id)
    limit = asyncio.Semaphore(at_once)

    async def may_read(user_id: str) -> set[int]:
        async with limit:
            found: set[int] = set()
            try:
                async for page in every_page(
                    acting_model.list_saved_searches,
                    v1.ListSavedSearchesRequest(caller=v1.Caller(user_id=user_id)),
                    page_size=500,
                ):
                    found.update(s.id for s in page.saved_searches)
            except (PermissionDenied, NotFound):
                return set()
            except Unavailable:
                raise
            except BuglessError as exc:
                _log.warning(
                    "which saved searches %s may read could not be told, their shared "
                    "subscriptions are left out until the next listing: %s",
                    user_id,
                    exc.message,
                    extra={"user_id": user_id},
                )
                return set()
            return found

    users = sorted(shared)
    readable_by = dict(zip(users, await asyncio.gather(*map(may_read, users)), strict=True))
    kept: list[v1.SavedSearchSubscription] = []
    for s in subscriptions:
        search = s.saved_search
        if search is None:
            continue
        if search.owner == s.user_id or search.id in readable_by.get(s.user_id, set()):
            kept.append(s)
        else:
            _log.debug(
                "saved search %s is no longer readable by its subscriber %s: not judged",
                search.id,
                s.user_id,
                extra={"saved_search_id": search.id, "user_id": s.user_id},
            )
    return kept
