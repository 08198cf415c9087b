"""What a cache of users may keep while it follows the users' change feed.

The Authenticator numbers every transaction that writes a user with the next
version of its users' change feed, in commit order (``GetUserChanges``; the
Authenticator's migration 0009). A cache that has read the feed up to
version ``n`` has seen every change committed up to ``n``: it forgets the
users those changes name, and may then keep everyone else until they change,
instead of re-asking every few seconds. Two caches follow it: the
Authenticator's own (reading the feed from its database) and the frontends'
:class:`bugless_core.user_cache.UserCache` (through ``GetUserChanges``).
:class:`FeedFollowing` is the bookkeeping both share; each cache does its own
forgetting.

Three rules keep a cached user from outliving a change:

* **Covered entries only.** An entry read at a version below the one the
  cache starts following from (its first read of the feed, or a ``reset``)
  may predate a change the feed will never name to it: the cache forgets
  such entries when it starts (:meth:`FeedFollowing.started`). Kept on
  ``fallback_seconds`` instead, a user disabled just before an
  Authenticator replica's first read stayed enabled there that long (30 s
  by default). :meth:`FeedFollowing.fresh` still trusts an entry the feed
  does not cover no longer than that.
* **No late stores.** A read that began before a change but ends after the
  cache forgot that user would put the old record back, to be served until
  the backstop. Every read carries the version it was made at (the feed
  version the answering replica had applied before it read); the cache keeps
  a user only if that is at least the version of the user's latest change it
  has seen (:meth:`FeedFollowing.may_keep`). Otherwise the answer is used
  once, not kept.
* **Fall back when the feed is not followed.** An entry is trusted past
  ``fallback_seconds`` only while the feed was read successfully within
  ``fallback_seconds``: a cache whose follower fails (the Authenticator or its
  database away) is back to the old TTL within that time, never serving
  unbounded-stale data. ``backstop_seconds`` bounds every entry regardless.
  "Read" is when the read the answer reflects began: an Authenticator
  replica answering from what its own follower read earlier says how much
  earlier (``UserChanges.read_age_seconds``, up to about two of its polls),
  and the frontend counts from there, not from its own call.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

#: Recently changed users whose change version is remembered (for :meth:`FeedFollowing.may_keep`).
REMEMBERED_CHANGES = 10_000
#: How long a followed cache keeps a user who does not change (a bound, should the feed lie).
BACKSTOP_SECONDS = 600.0
#: ``--user-changes-seconds`` of a frontend (the API's and the web's), said once.
USER_CHANGES_SECONDS_HELP = (
    "How often the users' change feed is read (people are kept until they change; a "
    "rename shows within this plus up to two of the Authenticator's "
    "--user-changes-seconds, as a replica answers from what it last read); 0, or not "
    "below --user-cache-seconds: never, keep people --user-cache-seconds."
)


class FeedFollowing:
    """A cache's position in the users' change feed and what it may keep because of it.

    Not thread-safe: it lives on one event loop, beside the cache it guards.

    Args:
        fallback_seconds: How long an entry is trusted on its own age alone
            (the old TTL): always for an entry the feed does not cover, and
            for every entry once the feed was last read longer ago than this.
        backstop_seconds: No entry is trusted longer than this.
        clock: Monotonic seconds (injectable for tests).
        remembered: How many recently changed users keep their change
            version; older ones are forgotten, and reads below the newest
            forgotten version are then not kept at all (conservative).
    """

    def __init__(
        self,
        *,
        fallback_seconds: float,
        backstop_seconds: float = BACKSTOP_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        remembered: int = REMEMBERED_CHANGES,
    ) -> None:
        self.fallback_seconds = fallback_seconds
        self.backstop_seconds = max(backstop_seconds, fallback_seconds)
        self._clock = clock
        self._remembered = remembered
        #: The feed version applied (0: not following yet).
        self.version = 0
        #: Entries read at this version or above are covered by the feed.
        self._covered_from = math.inf
        #: When the last successful read of the feed began (monotonic).
        self._last_read_at = -math.inf
        #: Recently changed users: the version of the latest change seen.
        self._changed: OrderedDict[str, int] = OrderedDict()
        #: Reads below this version are not kept (changes forgotten, or a restart).
        self._floor = 0

    @property
    def following(self) -> bool:
        """Whether the feed was read successfully within ``fallback_seconds``."""
        return self._clock() - self._last_read_at < self.fallback_seconds

    def may_keep(self, user_id: str, read_at: int) -> bool:
        """Whether a user read at version ``read_at`` may be stored (else: used once)."""
        return read_at >= self._changed.get(user_id, self._floor)

    def fresh(self, stored_at: float, read_at: int, now: float) -> bool:
        """Whether an entry stored at ``stored_at``, read at version ``read_at``, may be served."""
        age = now - stored_at
        if age >= self.backstop_seconds:
            return False
        if age < self.fallback_seconds:
            return True
        return read_at >= self._covered_from and now - self._last_read_at < self.fallback_seconds

    def started(self, version: int, read_began: float) -> None:
        """The feed is followed from ``version`` on (its head: first read, or after a reset).

        The caller forgets, at once, every entry it read below ``version``
        (after a reset: every entry): the changes up to it are never named
        to this cache, so such an entry may predate one.
        """
        self.version = version
        self._covered_from = version
        self._floor = version
        self._changed.clear()
        self._last_read_at = read_began

    def applied(self, user_ids: Iterable[str], version: int, read_began: float) -> None:
        """The changes up to ``version`` naming ``user_ids`` were applied (forgotten by the cache).

        ``read_began``: when the feed read that returned them began, on this
        object's clock: every change committed before then is now known. A
        frontend passes its call's start less the reply's
        ``read_age_seconds`` (how long before answering the replica read the
        feed): an answer from a replica's memory is that much older than
        the call.
        """
        for user_id in user_ids:
            self._changed[user_id] = version
            self._changed.move_to_end(user_id)
        while len(self._changed) > self._remembered:
            _, dropped = self._changed.popitem(last=False)
            self._floor = max(self._floor, dropped)
        self.version = max(self.version, version)
        self._last_read_at = max(self._last_read_at, read_began)

    def now(self) -> float:
        """The current time on this object's clock."""
        return self._clock()

    def read_age(self) -> float:
        """Seconds since the read the feed counts as followed from began (inf: none yet)."""
        return self._clock() - self._last_read_at


__all__ = [
    "BACKSTOP_SECONDS",
    "REMEMBERED_CHANGES",
    "USER_CHANGES_SECONDS_HELP",
    "FeedFollowing",
]
