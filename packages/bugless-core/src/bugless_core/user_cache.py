"""People as the Authenticator last described them, kept until they change.

Both frontends show people the Model knows only by opaque user ids: without
a cache every issue page (web) or GetIssue (API) costs a ``GetUsers`` call for
everyone on it, although the same few people appear again and again.
:class:`UserCache` keeps each ``v1.User`` the Authenticator returns, by id and
by lower-cased username. The web uses whole users (display names for the
chips and forms); the API translates between ids and usernames with the same
cache (``bugless_api._users.UserDirectory``).

How long an entry is trusted depends on the users' change feed
(``GetUserChanges``; :mod:`bugless_core.user_changes` has the rules). Given a
``changes`` fetch, the cache follows the feed in a task of its own, every
``poll_seconds``: the users a change names are forgotten (a rename shows
within about a poll, or two when made through another Authenticator replica
than the one answering: each answers from what its own follower last read),
everyone else is kept for ``backstop_seconds``. While
the feed is not followed (no ``changes`` fetch, the Authenticator away, or
one too old to have the feed), an entry is trusted for ``ttl_seconds`` only,
as before the feed existed: then a rename shows at most that late, and within
that time the old username still resolves to the id it named. The feed is
followed only when it is read more often than ``ttl_seconds``: read more
rarely, it could never vouch for an entry older than that. An answer an
Authenticator replica gives from what its own follower read counts from
that read (``UserChanges.read_age_seconds``, up to about one of the
replica's polls, two while it lags), so a replica whose poll plus the
cache's own is not below the TTL leaves the cache on its TTL between reads:
the cache says so in one warning naming both settings and the figures
(``UserChanges.poll_seconds``, :meth:`UserCache.poll_changes`). A ``GetUsers``
answer read before a change the cache has already applied is used for the
request that asked, not kept (``UsersResponse.version``); so is, once the
cache follows the feed, one read at version 0 (from an Authenticator replica
that follows no feed yet: nothing says which changes it has seen), and what
it kept from before its first read of the feed, read below the head that
read gave, is forgotten then (the feed never names those changes to it).

An id the Authenticator does not know is remembered as unknown like a user
(and forgotten when the feed names it: a created or merged id shows): such
ids are people who are gone (an account removed from the directory, an
author of an imported history who never had an account), and without that
every page showing their issues asked again and cost the Authenticator a
database query. Unknown usernames are never remembered, so a person who has
just signed in for the first time can be named (``assignee:newcomer``) at
once. A TTL of 0 asks every time.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import TYPE_CHECKING, Literal

from bugless_core import limits
from bugless_core.backoff import Backoff
from bugless_core.clients import call
from bugless_core.errors import BuglessError, Unavailable
from bugless_core.outage import OutageLog
from bugless_core.user_changes import BACKSTOP_SECONDS, FeedFollowing
from bugless_core.usernames import username_key
from bugless_proto import v1

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Gauge

_log = logging.getLogger("bugless.user_cache")

#: Most users remembered at once, by id and separately by name (oldest stored forgotten first).
USER_CACHE_SIZE = 10_000
#: The follower's pauses after errors it did not expect (a bug): 1 s doubling
#: to a minute, half of each always waited (never a spin), and never shorter
#: than a poll: the supervised loops' policy
#: (``bugless_core.supervision.LOOP_BACKOFF``).
FOLLOWER_BACKOFF = Backoff(first_seconds=1.0, max_seconds=60.0, jitter=0.5)
#: The follower's name as a background loop (the ``loop`` label of its metrics).
FOLLOWER_LOOP = "user_cache.changes"

#: The gauge each frontend sets whenever it read the users' change feed (its
#: name and help are one here; each frontend registers it as its metrics are
#: built: the web's by worker files, ``bugless_web.metrics``).
FEED_READ_GAUGE = "bugless_user_feed_last_read_timestamp_seconds"
FEED_READ_HELP = (
    "When this frontend last read the Authenticator's users' change feed successfully, in "
    "Unix seconds: when the read began, the Authenticator's own when it answered from what "
    "it had read (absent: it has not followed the feed yet, or never does). Once that is "
    "more than --user-cache-seconds ago, people are kept that long only: alert on "
    "time() minus it."
)

_FEED_READ: weakref.WeakKeyDictionary[CollectorRegistry, Gauge] = weakref.WeakKeyDictionary()


def feed_read_recorder(
    registry: CollectorRegistry, *, multiprocess_mode: Literal["all", "livemin"] = "all"
) -> Callable[[float], None]:
    """An ``on_read`` for :class:`UserCache`: sets :data:`FEED_READ_GAUGE` in ``registry``.

    To when the read the feed now counts from began: the frontend's call, or
    earlier by the answer's ``read_age_seconds`` (an Authenticator replica
    answering from what its follower read), so the gauge's age is the one
    that decides when people are kept ``--user-cache-seconds`` only.

    The gauge is registered at the first read, not before: a frontend that
    has not followed the feed yet (the follower starts with the first
    look-up; a web worker that has shown nobody yet) has no value rather
    than 0, which an alert on its age would take for a feed unread since
    1970. ``multiprocess_mode``: how a ``--workers`` web merges its workers'
    values (``livemin``: the one that read the longest ago).
    """

    def record(age: float) -> None:
        gauge = _FEED_READ.get(registry)
        if gauge is None:
            # Imported here: a web worker imports this module before its metrics are set up.
            from prometheus_client import Gauge  # noqa: PLC0415

            gauge = Gauge(
                FEED_READ_GAUGE,
                FEED_READ_HELP,
                registry=registry,
                multiprocess_mode=multiprocess_mode,
            )
            _FEED_READ[registry] = gauge
        gauge.set(time.time() - age)

    return record


#: Asks the Authenticator about one batch of ids or usernames.
Fetch = Callable[[list[str]], Awaitable[v1.UsersResponse]]
#: Asks the Authenticator which users changed after a feed version.
FetchChanges = Callable[[int], Awaitable[v1.UserChanges]]
#: A cached user (``None``: an id the Authenticator did not know), when it was
#: stored, and the feed version it was read at.
_Entry = tuple[float, int, v1.User | None]


class UserCache:
    """Users by id and by username, fetched in batches and kept until they change.

    The users handed out are shared between requests: do not modify them.

    Args:
        ttl_seconds: How long an entry is trusted while the feed is not
            followed (0: nothing is kept).
        max_entries: Most users kept by id, and by name.
        clock: Monotonic seconds (injectable for tests).
        changes: Reads the users' change feed (``GetUserChanges``); None:
            the cache never follows it.
        poll_seconds: How often the follower reads the feed; the feed is
            not read at all unless this is more than 0 and less than
            ``ttl_seconds``.
        backstop_seconds: How long an entry lives while the feed is followed.
        on_read: Called after every successful read of the feed by the
            follower, with the seconds since the read it counts from began
            (:meth:`FeedFollowing.read_age`; a frontend's metrics:
            :data:`FEED_READ_GAUGE`).
        metrics_registry: Where the follower reports as every background
            loop does (``bugless_background_*{loop="user_cache.changes"}``,
            :class:`~bugless_core.supervision.SupervisedLoop`): the registry
            the frontend's ``/metrics`` serves; None: prometheus_client's
            process registry.
        on_changed: Called with the user ids each read of the feed names,
            or None when the feed was reset (anyone may have changed), so
            that what a frontend keeps per user beside this cache (the API's
            identity of a bot's connection) is dropped as promptly as the
            people here: a disable or a group change is a change of the user.
    """

    def __init__(
        self,
        *,
        ttl_seconds: float,
        max_entries: int = USER_CACHE_SIZE,
        clock: Callable[[], float] = time.monotonic,
        changes: FetchChanges | None = None,
        poll_seconds: float = 1.0,
        backstop_seconds: float = BACKSTOP_SECONDS,
        on_read: Callable[[float], None] | None = None,
        metrics_registry: CollectorRegistry | None = None,
        on_changed: Callable[[Collection[str] | None], None] | None = None,
    ) -> None:
        self._ttl = ttl_seconds
        self._on_changed = on_changed
        self._metrics_registry = metrics_registry
        self._on_read = on_read
        self._max_entries = max_entries
        self._clock = clock
        self.following = FeedFollowing(
            fallback_seconds=ttl_seconds, backstop_seconds=backstop_seconds, clock=clock
        )
        self._changes = changes if 0 < poll_seconds < ttl_seconds else None
        self._poll_seconds = poll_seconds
        #: The Authenticators' poll intervals warned about as too slow (each once).
        self._warned_polls: set[float] = set()
        self._follower: asyncio.Task[None] | None = None
        #: One read of the feed at a time (:meth:`poll_changes`).
        self._polling = asyncio.Lock()
        self._by_id: OrderedDict[str, _Entry] = OrderedDict()
        self._by_name: OrderedDict[str, _Entry] = OrderedDict()

    async def by_id(self, user_ids: Iterable[str], fetch: Fetch) -> dict[str, v1.User]:
        """The users behind ``user_ids`` (empty ids ignored, unknown ones absent).

        ``fetch`` (a ``GetUsers`` call) is awaited once per batch of at most
        ``MAX_USER_LOOKUP`` ids not fresh in the cache; the ids it does not
        return are remembered as unknown.
        """
        self._follow()
        found, missing = self._fresh(self._by_id, sorted({u for u in user_ids if u}))
        for start in range(0, len(missing), limits.MAX_USER_LOOKUP):
            batch = missing[start : start + limits.MAX_USER_LOOKUP]
            reply = await fetch(batch)
            self._remember(reply.users, reply.version)
            for user in reply.users:
                found[user.user_id] = user
            self._remember_unknown((u for u in batch if u not in found), reply.version)
        return found

    async def by_name(self, usernames: Iterable[str], fetch: Fetch) -> dict[str, v1.User]:
        """The users named ``usernames``, keyed by their username as the Authenticator spells it.

        ``fetch`` (a ``LookupUsers`` call) is awaited once per batch of names
        not fresh in the cache.
        """
        self._follow()
        wanted = sorted({username_key(n) for n in usernames if n})
        cached, missing = self._fresh(self._by_name, wanted)
        found = {user.username: user for user in cached.values()}
        for start in range(0, len(missing), limits.MAX_USER_LOOKUP):
            reply = await fetch(missing[start : start + limits.MAX_USER_LOOKUP])
            self._remember(reply.users, reply.version)
            for user in reply.users:
                found[user.username] = user
        return found

    def close(self) -> None:
        """Stop following the feed (the cache still answers, on its TTL)."""
        if self._follower is not None:
            self._follower.cancel()
            self._follower = None
        self._changes = None

    async def poll_changes(self) -> None:
        """Read the feed once (every page) and forget the users it names.

        The follower calls it every ``poll_seconds``; tests may call it to
        apply what changed without waiting.

        A reply's ``read_age_seconds`` (an Authenticator replica answering
        from what its own follower read that long ago) is taken off the
        call's start: the feed is "followed" from when the answer's read
        began, not from when this call did. A reply's ``poll_seconds`` (how
        often that replica reads) too slow for this cache is one warning
        (:meth:`_check_replica_poll`).

        Reads asked at once run one after the other (a test's poll beside
        the follower's; the follower alone never overlaps itself): both
        would ask from the same version, and a first read answered last
        would start the cache over at its older head after changes read
        since had been applied, forgetting which versions they were at (a
        look-up in flight, read before one of them, was then kept until the
        next read named that user again).

        Raises:
            BuglessError: the Authenticator could not answer (nothing from
                the failed read applied).
            Unavailable: the Authenticator answered without a feed version
                (head 0): nothing can be followed from there.
        """
        async with self._polling:
            await self._poll()

    async def _poll(self) -> None:
        """:meth:`poll_changes`, under its lock."""
        if self._changes is None:
            return
        while True:
            began = self._clock()
            if self.following.version == 0:
                head = await self._changes(0)
                self._check_replica_poll(head.poll_seconds)
                if head.version <= 0:
                    # Following from 0 would cover every entry (all are read at
                    # version 0 or more) while no change is ever reported.
                    msg = "the Authenticator's users' change feed answered no version"
                    raise Unavailable(msg)
                self.following.started(head.version, began - head.read_age_seconds)
                self._forget_read_below(head.version)
                return
            reply = await self._changes(self.following.version)
            self._check_replica_poll(reply.poll_seconds)
            if reply.reset:
                self._by_id.clear()
                self._by_name.clear()
                self.following.started(reply.version, began - reply.read_age_seconds)
                if self._on_changed is not None:
                    self._on_changed(None)
                return
            self._forget(reply.user_ids)
            if self._on_changed is not None and reply.user_ids:
                self._on_changed(reply.user_ids)
            # Only the last page vouches for "every change before the read is
            # known": after an earlier one the rest is still unread, and a
            # failure before it must leave the feed counted as read from the
            # last full read, so that the TTL takes over in time.
            read_began = -math.inf if reply.more else began - reply.read_age_seconds
            self.following.applied(reply.user_ids, reply.version, read_began)
            if not reply.more:
                return

    def _check_replica_poll(self, replica_poll: float) -> None:
        """Warn, once per figure, when the replica's poll and this cache's do not fit the TTL.

        An answer counts as read when the replica's read began, up to one of
        its polls (``replica_poll``) before the call, and the feed is read
        again ``poll_seconds`` later: just before that, the last read is up
        to both ago. Not below ``ttl_seconds``, the feed stops vouching for
        the kept people for part of every poll, and those kept longer than
        the TTL are read again as if there were no feed (the freshness
        gauge's alert fires too): the operator is told which settings to
        change. A replica whose reads end late (a poll and a half after the
        one before began, up to two while it still answers from memory)
        logs that itself and shows it in its lag metric
        (``bugless_auth.user_feed.LAGGING_POLLS``): only the steady state is
        checked here. 0 (an older replica, which does not say): not checked.
        Once per process: each web worker follows the feed itself, through
        its own channel, maybe to another replica.
        """
        worst = replica_poll + self._poll_seconds
        if replica_poll <= 0 or worst < self._ttl or replica_poll in self._warned_polls:
            return
        self._warned_polls.add(replica_poll)
        _log.warning(
            "the Authenticator reads the users' change feed every %g s (its "
            "--user-changes-seconds) and this frontend every %g s (--user-changes-seconds): "
            "a read is up to %g s old, not below --user-cache-seconds (%g s), so people kept "
            "longer than %g s are often read again as if there were no feed; set the "
            "Authenticator's --user-changes-seconds below %g, or --user-cache-seconds here "
            "above %g",
            replica_poll,
            self._poll_seconds,
            worst,
            self._ttl,
            self._ttl,
            self._ttl - self._poll_seconds,
            worst,
        )

    def follow(self) -> None:
        """Start following the feed now (on the running loop), before the cache is first used.

        For a frontend whose ``on_changed`` matters before anyone is looked
        up: the API's first bot may only ever ask ``WhoAmI``.
        """
        self._follow()

    def _follow(self) -> None:
        """Start the follower on the running loop, the first time the cache is used."""
        if self._changes is not None and self._follower is None:
            self._follower = asyncio.get_running_loop().create_task(self._follow_feed())

    async def _follow_feed(self) -> None:
        """Poll until closed, supervised as every background loop is.

        :class:`~bugless_core.supervision.SupervisedLoop` (imported now, not
        with this module: a web worker must not import prometheus_client
        before its metrics are set up, see ``bugless_web.metrics``) logs and
        counts the two outcomes: the Authenticator away, as every loop's
        outage (:class:`~bugless_core.outage.OutageLog`: one warning, a
        reminder a minute, one info line when the feed is read again, and
        ``bugless_background_outage_seconds``; the cache falls back to its
        TTL meanwhile, and the feed is read again every poll), and an error
        nobody expected (an error with its traceback,
        ``bugless_background_failures_total`` and ``_consecutive_failures``;
        retried after :data:`FOLLOWER_BACKOFF`).

        Reads begin ``poll_seconds`` apart (the next as one ends, if it took
        longer): the feed is then last read at most a poll and one read ago
        when the next read ends, as :meth:`_check_replica_poll` counts, not
        a poll and two reads. After a failure the next try is a poll (or the
        backoff) after it.
        """
        from prometheus_client import REGISTRY  # noqa: PLC0415

        from bugless_core.supervision import SupervisedLoop  # noqa: PLC0415

        loop = asyncio.get_running_loop()
        supervision = SupervisedLoop(
            FOLLOWER_LOOP,
            backoff=FOLLOWER_BACKOFF,
            registry=self._metrics_registry or REGISTRY,
            outage=OutageLog(
                "following the users' change feed",
                logger=_log,
                meanwhile=f"people are kept {self._ttl:g} s meanwhile",
                loop=FOLLOWER_LOOP,
            ),
        )
        while True:
            wait = self._poll_seconds
            began = loop.time()
            try:
                await self.poll_changes()
            except BuglessError as exc:
                supervision.unavailable(exc)
            except Exception as exc:
                wait = supervision.failed(exc, at_least=wait)
            else:
                supervision.succeeded()
                if self._on_read is not None:
                    self._on_read(self.following.read_age())
                wait = max(0.0, began + self._poll_seconds - loop.time())
            await asyncio.sleep(wait)

    def _forget(self, user_ids: Iterable[str]) -> None:
        """Drop the users ``user_ids`` by id and under any name they were kept by."""
        changed = set(user_ids)
        if not changed:
            return
        for user_id in changed:
            self._by_id.pop(user_id, None)
        for name in [
            name
            for name, (_, _, user) in self._by_name.items()
            if user is not None
            and (user.user_id in changed or not changed.isdisjoint(user.merged_user_ids))
        ]:
            del self._by_name[name]

    def _forget_read_below(self, version: int) -> None:
        """Drop the entries read below ``version``: the feed, followed from there, cannot vouch.

        Looked up before the first read of the feed (through a replica whose
        version was lower), they may predate a change up to ``version``,
        which the feed never names to this cache.
        """
        for cache in (self._by_id, self._by_name):
            for key in [key for key, (_, read_at, _) in cache.items() if read_at < version]:
                del cache[key]

    def _fresh(
        self, cache: OrderedDict[str, _Entry], keys: list[str]
    ) -> tuple[dict[str, v1.User], list[str]]:
        """The users cached and still fresh for ``keys``, and the keys left to ask for.

        A key fresh as unknown is in neither.
        """
        now = self._clock()
        fresh = self.following.fresh
        found: dict[str, v1.User] = {}
        missing: list[str] = []
        for key in keys:
            entry = cache.get(key)
            if entry is None or not fresh(entry[0], entry[1], now):
                missing.append(key)
            elif entry[2] is not None:
                found[key] = entry[2]
        return found, missing

    def _remember(self, users: Iterable[v1.User], read_at: int) -> None:
        if self._ttl <= 0:
            return
        now = self._clock()
        may_keep = self.following.may_keep
        for user in users:
            if may_keep(user.user_id, read_at):
                self._store(self._by_id, user.user_id, (now, read_at, user))
                self._store(self._by_name, username_key(user.username), (now, read_at, user))

    def _remember_unknown(self, user_ids: Iterable[str], read_at: int) -> None:
        if self._ttl <= 0:
            return
        now = self._clock()
        for user_id in user_ids:
            if self.following.may_keep(user_id, read_at):
                self._store(self._by_id, user_id, (now, read_at, None))

    def _store(self, cache: OrderedDict[str, _Entry], key: str, entry: _Entry) -> None:
        cache[key] = entry
        cache.move_to_end(key)
        while len(cache) > self._max_entries:
            cache.popitem(last=False)


def get_users(auth: v1.AuthenticatorStub, *, timeout: float | None = None) -> Fetch:
    """A :class:`UserCache` fetch of users by id: the Authenticator's ``GetUsers``."""

    async def fetch(user_ids: list[str]) -> v1.UsersResponse:
        return await call(auth.get_users, v1.GetUsersRequest(user_ids=user_ids), timeout=timeout)

    return fetch


def lookup_users(auth: v1.AuthenticatorStub, *, timeout: float | None = None) -> Fetch:
    """A :class:`UserCache` fetch of users by username: the Authenticator's ``LookupUsers``."""

    async def fetch(usernames: list[str]) -> v1.UsersResponse:
        return await call(
            auth.lookup_users, v1.LookupUsersRequest(usernames=usernames), timeout=timeout
        )

    return fetch


def get_user_changes(auth: v1.AuthenticatorStub, *, timeout: float | None = None) -> FetchChanges:
    """A :class:`UserCache` changes fetch: the Authenticator's ``GetUserChanges``."""

    async def fetch(after_version: int) -> v1.UserChanges:
        return await call(
            auth.get_user_changes,
            v1.GetUserChangesRequest(after_version=after_version),
            timeout=timeout,
        )

    return fetch
