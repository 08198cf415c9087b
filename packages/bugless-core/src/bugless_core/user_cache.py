"""People as the Authenticator last described them, kept for a few seconds.

Both frontends show people the Model knows only by opaque user ids: without
a cache every issue page (web) or GetIssue (API) costs a ``GetUsers`` call for
everyone on it, although the same few people appear again and again.
:class:`UserCache` keeps each ``v1.User`` the Authenticator returns, by id and
by lower-cased username, for a TTL. The web uses whole users (display names
for the chips and forms); the API translates between ids and usernames with
the same cache (``bugless_api._users.UserDirectory``).

Staleness is the price and is bounded by the TTL: a rename (or a new display
name) shows at most TTL seconds late, and within that time the old username
still resolves to the id it named. An id the Authenticator does not know is
remembered as unknown for the TTL too: such ids are people who are gone (an
account removed from the directory, an author of an imported history who never
had an account), and without that every page showing their issues asked again
and cost the Authenticator a database query; the id of someone new cannot be
on a page before the Authenticator made it. Unknown usernames are never
remembered, so a person who has just signed in for the first time can be named
(``assignee:newcomer``) at once. A TTL of 0 asks every time.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable

from bugless_core import limits
from bugless_core.clients import call
from bugless_proto import v1

#: Most users remembered at once, by id and separately by name (oldest stored forgotten first).
USER_CACHE_SIZE = 10_000

#: Asks the Authenticator about one batch of ids or usernames.
Fetch = Callable[[list[str]], Awaitable[list[v1.User]]]


class UserCache:
    """Users by id and by username, fetched in batches and reused for a TTL.

    The users handed out are shared between requests: do not modify them.
    """

    def __init__(
        self,
        *,
        ttl_seconds: float,
        max_entries: int = USER_CACHE_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Remember users for ``ttl_seconds`` (0: not at all), timed by ``clock``."""
        self._ttl = ttl_seconds
        self._max_entries = max_entries
        self._clock = clock
        #: ``None``: an id the Authenticator did not know when last asked.
        self._by_id: OrderedDict[str, tuple[float, v1.User | None]] = OrderedDict()
        self._by_name: OrderedDict[str, tuple[float, v1.User | None]] = OrderedDict()

    async def by_id(self, user_ids: Iterable[str], fetch: Fetch) -> dict[str, v1.User]:
        """The users behind ``user_ids`` (empty ids ignored, unknown ones absent).

        ``fetch`` (a ``GetUsers`` call) is awaited once per batch of at most
        ``MAX_USER_LOOKUP`` ids not fresh in the cache; the ids it does not
        return are remembered as unknown for the TTL.
        """
        found, missing = self._fresh(self._by_id, sorted({u for u in user_ids if u}))
        for user in await self._fetch_in_batches(missing, fetch):
            found[user.user_id] = user
        self._remember_unknown(u for u in missing if u not in found)
        return found

    async def by_name(self, usernames: Iterable[str], fetch: Fetch) -> dict[str, v1.User]:
        """The users named ``usernames``, keyed by their username as the Authenticator spells it.

        ``fetch`` (a ``LookupUsers`` call) is awaited once per batch of names
        not fresh in the cache.
        """
        wanted = sorted({n.lower() for n in usernames if n})
        cached, missing = self._fresh(self._by_name, wanted)
        found = {user.username: user for user in cached.values()}
        for user in await self._fetch_in_batches(missing, fetch):
            found[user.username] = user
        return found

    async def _fetch_in_batches(self, keys: list[str], fetch: Fetch) -> list[v1.User]:
        users: list[v1.User] = []
        for start in range(0, len(keys), limits.MAX_USER_LOOKUP):
            batch = await fetch(keys[start : start + limits.MAX_USER_LOOKUP])
            self._remember(batch)
            users.extend(batch)
        return users

    def _fresh(
        self, cache: OrderedDict[str, tuple[float, v1.User | None]], keys: list[str]
    ) -> tuple[dict[str, v1.User], list[str]]:
        """The users cached and still fresh for ``keys``, and the keys left to ask for.

        A key fresh as unknown is in neither.
        """
        now = self._clock()
        found: dict[str, v1.User] = {}
        missing: list[str] = []
        for key in keys:
            entry = cache.get(key)
            if entry is None or entry[0] <= now:
                missing.append(key)
            elif entry[1] is not None:
                found[key] = entry[1]
        return found, missing

    def _remember(self, users: Iterable[v1.User]) -> None:
        if self._ttl <= 0:
            return
        expires = self._clock() + self._ttl
        for user in users:
            self._store(self._by_id, user.user_id, (expires, user))
            self._store(self._by_name, user.username.lower(), (expires, user))

    def _remember_unknown(self, user_ids: Iterable[str]) -> None:
        if self._ttl <= 0:
            return
        expires = self._clock() + self._ttl
        for user_id in user_ids:
            self._store(self._by_id, user_id, (expires, None))

    def _store(
        self,
        cache: OrderedDict[str, tuple[float, v1.User | None]],
        key: str,
        entry: tuple[float, v1.User | None],
    ) -> None:
        cache[key] = entry
        cache.move_to_end(key)
        while len(cache) > self._max_entries:
            cache.popitem(last=False)


def get_users(auth: v1.AuthenticatorStub, *, timeout: float | None = None) -> Fetch:
    """A :class:`UserCache` fetch of users by id: the Authenticator's ``GetUsers``."""

    async def fetch(user_ids: list[str]) -> list[v1.User]:
        reply = await call(auth.get_users, v1.GetUsersRequest(user_ids=user_ids), timeout=timeout)
        return list(reply.users)

    return fetch


def lookup_users(auth: v1.AuthenticatorStub, *, timeout: float | None = None) -> Fetch:
    """A :class:`UserCache` fetch of users by username: the Authenticator's ``LookupUsers``."""

    async def fetch(usernames: list[str]) -> list[v1.User]:
        reply = await call(
            auth.lookup_users, v1.LookupUsersRequest(usernames=usernames), timeout=timeout
        )
        return list(reply.users)

    return fetch
