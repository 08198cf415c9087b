"""The users' change feed: reading it (GetUserChanges), following it, pruning it.

Every transaction writing ``users`` logs the ids it changed under the next
version, in commit order (:mod:`bugless_auth.user_writes`, migration 0009).
:func:`read_user_changes` answers ``GetUserChanges`` from the database, in
one snapshot, so a caller resuming after the version it was given misses
nothing. :class:`UserFeedFollower` is each replica's own reader: it polls the
feed every ``user_changes_seconds`` and makes its :class:`UserDirectory
<bugless_auth.directory.UserDirectory>` forget the users named, so a change
made through any replica shows on every replica within about a poll, and
prunes the feed (rows older than ``user_changes_retention_seconds``) every
:data:`PRUNE_EVERY_SECONDS`; replicas pruning at once delete the same prefix.

Frontends poll ``GetUserChanges`` too, each every second or so, and almost
always nothing changed: the follower answers them from memory
(:meth:`UserFeedFollower.answer`, :class:`RecentChanges`) when it read the
whole feed within two polls and no write through this replica is newer than
what it read; otherwise the database is read as before. Its pages are kept
regardless of the retention: a caller resuming from a version pruned since
gets the changes the follower read (exact) rather than the database's
``reset`` (which says only that nobody knows any more), see
:meth:`RecentChanges.after`.

A database error skips one poll (logged when the outage starts, once a
minute while it lasts and when it ends, by the loop's
:class:`~bugless_core.supervision.OutageLog`: the directory's cache falls
back to ``cache_ttl_seconds`` meanwhile, see
:mod:`bugless_core.user_changes`); any other error is supervised as
``auth.user_changes`` (:class:`~bugless_core.supervision.SupervisedLoop`).
A follower whose reads succeed but come late (a slow database, a lock, a
large backlog) is no outage, yet its answers from memory are older than the
one poll frontends allow for (``UserChanges.poll_seconds``): a read that ends
more than :data:`LAGGING_POLLS` polls after the one before began is logged
the same way (a WARNING when it starts, a reminder a minute, an INFO when a
read is on time again). Both show in the metrics an alert reads
(:class:`FollowerMetrics`): how far behind the follower is, in seconds and
in versions, and its failed reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import math
import time
import weakref
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from bugless_auth import _queries as sql
from bugless_core.errors import BuglessError
from bugless_core.supervision import OutageLog, SupervisedLoop
from bugless_proto import v1

if TYPE_CHECKING:
    from bugless_auth.directory import UserDirectory
    from bugless_auth.store import IdentityStore

_log = logging.getLogger("bugless.auth")

#: Most change rows one read returns (a page ends at a version's end, so one
#: transaction's changes come whole, however many).
PAGE_ROWS = 1000
#: How often each replica prunes the feed.
PRUNE_EVERY_SECONDS = 60.0
#: The follower's last pages kept to answer a frontend a version or two behind.
RECENT_PAGES = 16
#: A follower's read of the feed vouches for its answers this many polls long.
FRESH_POLLS = 2.0
#: A follower lags once its last read to the feed's end began more than this
#: many polls before a read ends. On time, that is one poll and the read's
#: own duration (reads begin a poll apart), a little over 1; at
#: :data:`FRESH_POLLS` the replica stops answering from memory. Halfway, its
#: answers are half a poll older than the frontends allow for, which they
#: cannot see (their warning checks one poll): this replica logs it.
LAGGING_POLLS = 1.5


@dataclasses.dataclass(frozen=True)
class FollowerMetrics:
    """The users' feed follower's metrics, bound to one registry (the service's ``/metrics``).

    The gauges are read at scrape time from the follower last bound to the
    registry (one per replica; a test process runs several, each with its
    own registry), so an alert sees a poll that hangs while it hangs.

    Attributes:
        answers: ``GetUserChanges`` answers by source (memory or database).
        lag: Seconds since the follower last began a read that reached the
            feed's end (since it started, before its first): how old its
            answers from memory are at most, and what its
            ``read_age_seconds`` says. A little over one poll on time.
        poll: Its ``--user-changes-seconds``, so an alert can count the lag
            in polls (``lag > 2 * poll``: answered from the database).
        behind: Feed versions written that it has not applied, as far as it
            knows: the head its latest read saw (a backlog read page by
            page) or a write through this replica, whichever is newer. A
            lower bound: another replica's writes since its last read are
            unknown until it reads.
        failures: Reads of the feed that failed, by reason: ``unavailable``
            (the database away, an outage the loop logs) or ``error``
            (anything else: a bug, logged with its traceback).
    """

    answers: Counter
    lag: Gauge
    poll: Gauge
    behind: Gauge
    failures: Counter

    @classmethod
    def for_registry(cls, registry: CollectorRegistry) -> FollowerMetrics:
        """The metrics in ``registry``, registered the first time (a name registers once)."""
        metrics = _METRICS.get(registry)
        if metrics is None:
            metrics = cls(
                answers=Counter(
                    "bugless_auth_user_changes_answers_total",
                    "GetUserChanges answered, by where from: memory (this replica's follower "
                    "had read the feed that far within two polls) or database.",
                    ["source"],
                    registry=registry,
                ),
                lag=Gauge(
                    "bugless_auth_user_changes_lag_seconds",
                    "Seconds since this replica's follower began its last read of the users' "
                    "change feed that reached the end (how old its answers from memory are "
                    "at most; a little over one poll on time, answered from the database "
                    "past two).",
                    registry=registry,
                ),
                poll=Gauge(
                    "bugless_auth_user_changes_poll_seconds",
                    "How often this replica's follower reads the users' change feed "
                    "(--user-changes-seconds).",
                    registry=registry,
                ),
                behind=Gauge(
                    "bugless_auth_user_changes_versions_behind",
                    "Users' change feed versions this replica's follower knows were written "
                    "and has not applied (the head its last read saw, its own writes).",
                    registry=registry,
                ),
                failures=Counter(
                    "bugless_auth_user_changes_poll_failures_total",
                    "Reads of the users' change feed by this replica's follower that failed, "
                    "by reason: unavailable (the database) or error (unexpected).",
                    ["reason"],
                    registry=registry,
                ),
            )
            _METRICS[registry] = metrics
        return metrics


_METRICS: weakref.WeakKeyDictionary[CollectorRegistry, FollowerMetrics] = (
    weakref.WeakKeyDictionary()
)


async def read_user_changes(
    store: IdentityStore, after_version: int, *, page_rows: int = PAGE_ROWS
) -> v1.UserChanges:
    """The users changed after ``after_version`` (0: none, just the head).

    ``reset`` when the feed no longer reaches back to ``after_version``
    (pruned), or never did (a version above the head: another database, or
    one restored from a backup): the caller must forget everything.

    Raises:
        Unavailable: the database cannot be reached.
    """
    changes, _ = await _read_with_head(store, after_version, page_rows)
    return changes


async def _read_with_head(
    store: IdentityStore, after_version: int, page_rows: int
) -> tuple[v1.UserChanges, int]:
    """:func:`read_user_changes`, and the feed's head at that read (beyond a page's end)."""
    rows = await store.run(
        lambda conn: conn.fetch(sql.READ_USER_CHANGES, after_version, page_rows - 1),
        transaction=False,
    )
    head, pruned = rows[0]["head"], rows[0]["pruned"]
    if after_version <= 0:
        return v1.UserChanges(version=head), head
    if after_version < pruned or after_version > head:
        return v1.UserChanges(version=head, reset=True), head
    changed = [r for r in rows if r["version"] is not None]
    if not changed:
        return v1.UserChanges(version=head), head
    version = changed[-1]["version"]
    changes = v1.UserChanges(
        user_ids=list(dict.fromkeys(r["user_id"] for r in changed)),
        version=max(version, after_version),
        more=version < head,
    )
    return changes, head


async def prune_user_changes(store: IdentityStore, retention_seconds: float) -> None:
    """Remove the changes logged more than ``retention_seconds`` ago (raising ``pruned``)."""
    await store.run(
        lambda conn: conn.execute(sql.PRUNE_USER_CHANGES, retention_seconds), transaction=False
    )


@dataclasses.dataclass(frozen=True)
class _Page:
    """The users changed after version ``after`` up to ``version``, as one read returned them."""

    after: int
    version: int
    user_ids: tuple[str, ...]


class RecentChanges:
    """The feed as a follower last read it to its end: that head, and the last pages before it.

    Enough to answer ``GetUserChanges`` as the database would have then: from
    0 or the head (nothing newer), and from where one of the kept pages
    begins (the users of that page and the later ones, the head as version).
    A frontend resumes from a version some reply gave it, usually a head this
    follower read too. The pages are contiguous: a read that does not begin
    where they end (a poll failed after applying a page) starts them over.

    Retention does not apply here. The database answers ``reset`` below its
    ``pruned`` version because it no longer knows what changed there; these
    pages still do, and name exactly what the database named when they were
    read, so a caller resuming from a pruned version is told those changes
    and keeps everyone else (``UserChanges.reset`` in ``auth.proto`` allows
    either answer). The reply's version is :attr:`head`, never below the
    database's ``pruned`` at that read, so the caller's next question is one
    the database can answer too, or at worst (pruned past it since) answers
    with a ``reset``, which is always safe.

    Args:
        max_pages: Most pages kept (the oldest dropped first).
        max_ids: Most user ids kept over all pages: one answer's bound, as
            a database read's :data:`PAGE_ROWS`.
    """

    def __init__(self, *, max_pages: int = RECENT_PAGES, max_ids: int = PAGE_ROWS) -> None:
        self._max_pages = max_pages
        self._max_ids = max_ids
        #: The feed's head at the last read that reached its end (0: none yet).
        self.head = 0
        #: When that read began (monotonic): no change committed before is missed.
        self.read_at = -math.inf
        self._pages: deque[_Page] = deque()
        self._ids = 0

    def started(self, head: int, read_began: float) -> None:
        """The follower (re)starts at ``head`` (first read, or a reset): no pages."""
        self._pages.clear()
        self._ids = 0
        self.head = head
        self.read_at = read_began

    def read(self, pages: Sequence[v1.UserChanges], after: int, read_began: float) -> None:
        """One poll's pages, read after version ``after``, the last one ending at the head.

        ``read_began``: when the read of the last page began.
        """
        if after != self.head:
            self.started(after, self.read_at)
        for page in pages:
            if page.version > self.head:
                self._pages.append(_Page(self.head, page.version, tuple(page.user_ids)))
                self._ids += len(page.user_ids)
                self.head = page.version
        while self._pages and (len(self._pages) > self._max_pages or self._ids > self._max_ids):
            self._ids -= len(self._pages.popleft().user_ids)
        self.read_at = read_began

    def after(self, after_version: int) -> v1.UserChanges | None:
        """The feed after ``after_version`` as of :attr:`head`, or None: not known here."""
        if self.head <= 0 or after_version > self.head:
            return None
        if after_version in (0, self.head):
            return v1.UserChanges(version=self.head)
        starts = [page.after for page in self._pages]
        if after_version not in starts:
            return None
        later = list(self._pages)[starts.index(after_version) :]
        user_ids = dict.fromkeys(user_id for page in later for user_id in page.user_ids)
        return v1.UserChanges(user_ids=list(user_ids), version=self.head)


class UserFeedFollower:
    """Follows the feed from the database into a replica's :class:`UserDirectory`.

    Args:
        store: The database.
        directory: The cache that forgets the users the feed names.
        poll_seconds: How often to read the feed.
        retention_seconds: Changes older than this are pruned.
        metrics_registry: Where the follower's metrics go (:class:`FollowerMetrics`) and
            the supervision counts unexpected failures.
        page_rows: Most change rows one read of the feed returns
            (:func:`read_user_changes`); more waiting are read page by page.
    """

    def __init__(
        self,
        store: IdentityStore,
        directory: UserDirectory,
        *,
        poll_seconds: float,
        retention_seconds: float,
        metrics_registry: CollectorRegistry = REGISTRY,
        page_rows: int = PAGE_ROWS,
    ) -> None:
        self._store = store
        self._page_rows = page_rows
        self._directory = directory
        self.poll_seconds = poll_seconds
        self.retention_seconds = retention_seconds
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._next_prune = 0.0
        #: One poll at a time (:meth:`poll_once`).
        self._polling = asyncio.Lock()
        #: What this follower last read to the feed's end (:meth:`answer`).
        self.recent = RecentChanges()
        #: The feed's head as the latest read saw it (past its page's end).
        self._seen_head = 0
        #: When it started following: the lag counts from here until a first read.
        self._since = directory.following.now()
        self._metrics = FollowerMetrics.for_registry(metrics_registry)
        self._answers = self._metrics.answers
        self._metrics.poll.set(poll_seconds)
        for reason in ("unavailable", "error"):
            self._metrics.failures.labels(reason)  # shown as 0 before any failure
        me = weakref.ref(self)
        self._metrics.lag.set_function(functools.partial(_lag_seconds, me))
        self._metrics.behind.set_function(functools.partial(_versions_behind, me))
        #: Reads that end late (:data:`LAGGING_POLLS`), logged as an outage is.
        self.lagging = OutageLog(
            "reading the users' change feed on time",
            logger=_log,
            meanwhile=(
                "answers from memory are up to that old, where frontends allow for one poll "
                f"(UserChanges.poll_seconds); past {FRESH_POLLS:g} polls callers are sent to "
                "the database"
            ),
            loop="auth.user_changes",
            unit="polls",
        )
        self.supervised = SupervisedLoop(
            "auth.user_changes",
            registry=metrics_registry,
            outage=OutageLog(
                "following the users' change feed",
                logger=_log,
                meanwhile="the user cache falls back to its TTL",
            ),
        )

    def start(self) -> None:
        """Poll in the background until :meth:`stop`."""
        self._since = self._directory.following.now()
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self._every_poll())

    async def stop(self) -> None:
        """Stop polling (a poll under way is cancelled: it changes nothing but the cache)."""
        if self._task is not None:
            self._stopping.set()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def poll_once(self) -> None:
        """Read the feed after the directory's version and apply it (every page).

        Polls asked at once run one after the other: two reads in flight
        could finish out of order, and the older one, applied last, would set
        :attr:`recent` and the directory back to a version before the newer
        one's (a poll by hand beside the background's first one did, under
        load: the replica then sent a caller at the head it had just
        answered to the database).

        Raises:
            Unavailable: the database cannot be reached (nothing applied from
                the failed read; earlier pages stay applied).
        """
        async with self._polling:
            try:
                await self._poll()
            except BuglessError:
                self._metrics.failures.labels("unavailable").inc()
                raise
            except Exception:
                self._metrics.failures.labels("error").inc()
                raise

    async def _poll(self) -> None:
        following = self._directory.following
        after = following.version
        pages: list[v1.UserChanges] = []
        while True:
            began = following.now()
            if following.version == 0:
                start, self._seen_head = await _read_with_head(self._store, 0, self._page_rows)
                self._directory.start_following(start.version, began)
                self.recent.started(start.version, began)
                return
            changes, self._seen_head = await _read_with_head(
                self._store, following.version, self._page_rows
            )
            if changes.reset:
                _log.warning(
                    "the users' change feed was pruned past version %d: forgetting every user",
                    following.version,
                )
                self._directory.start_following(changes.version, began, forget=True)
                self.recent.started(changes.version, began)
                return
            # A page with more after it does not vouch for the read (see
            # UserCache.poll_changes): the last page does.
            read_began = -math.inf if changes.more else began
            self._directory.apply_changes(changes.user_ids, changes.version, read_began)
            pages.append(changes)
            if not changes.more:
                self.recent.read(pages, after, began)
                return

    def answer(self, after_version: int) -> v1.UserChanges | None:
        """``GetUserChanges`` from what this follower read, or None: read the database.

        Answered only while :attr:`recent` is fresh: read to the feed's end
        within :data:`FRESH_POLLS` polls (a follower failing or lagging sends
        every caller to the database), and at least as far as every write
        through this replica (whose caller may at once ask for the change).
        Then the reply is the one the database gave at :attr:`recent`'s read:
        its head is one this replica read, so a caller advancing to it skips
        nothing; a change another replica made since shows once this follower
        reads it, within about two polls instead of one. The reply's
        ``read_age_seconds`` says how long ago that read began, so the caller
        knows which changes its answer covers by time too
        (:meth:`bugless_core.user_changes.FeedFollowing.applied`).
        """
        recent = self.recent
        age = self._directory.following.now() - recent.read_at
        reply = (
            recent.after(after_version)
            if age < FRESH_POLLS * self.poll_seconds and self._store.logged_version <= recent.head
            else None
        )
        if reply is not None:
            reply.read_age_seconds = max(age, 0.0)
        self._answers.labels("database" if reply is None else "memory").inc()
        return reply

    def lag_seconds(self) -> float:
        """Seconds since the last read that reached the feed's end began (before one: the start).

        What :meth:`answer` compares with :data:`FRESH_POLLS` polls, and the
        ``read_age_seconds`` an answer from memory would carry now.
        """
        return self._directory.following.now() - max(self.recent.read_at, self._since)

    def versions_behind(self) -> int:
        """Feed versions known to be written and not applied (a lower bound, see the metric)."""
        applied = self._directory.following.version
        if applied == 0:  # not following yet: the lag says so
            return 0
        return max(self._seen_head, self._store.logged_version, applied) - applied

    def _check_lag(self, lag: float) -> None:
        """Log a read that ended ``lag`` seconds after the one before it began, if that is late."""
        if lag <= LAGGING_POLLS * self.poll_seconds:
            self.lagging.recovered()
            return
        self.lagging.failed(
            f"a read ended {lag:.1f} s after the one before it began, more than "
            f"{LAGGING_POLLS:g} polls of {self.poll_seconds:g} s (--user-changes-seconds)"
        )

    async def _every_poll(self) -> None:
        """Poll every ``poll_seconds`` (from each poll's start), prune now and then.

        A read begins a poll after the one before began, or as that one ends
        if it took longer: the answers from memory are then at most a poll
        and one read old (the age counts from a read's start, known at its
        end), which is what frontends allow for (``UserChanges.poll_seconds``).
        Counted from each end instead, they were a poll and two reads old,
        more than a frontend's check knew of whenever reads were slow. After
        a failure the next try is a poll (or the backoff) after it ends.

        A successful read is checked for lag (:meth:`_check_lag`) unless the
        rounds before it failed: that lag is the outage's, already logged.
        """
        wait = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), wait)
            if self._stopping.is_set():
                return
            wait = self.poll_seconds
            failing = self.supervised.consecutive_failures or self.supervised.outage.failed_rounds
            began = time.monotonic()
            try:
                before = max(self.recent.read_at, self._since)
                await self.poll_once()
                if not failing:
                    self._check_lag(self._directory.following.now() - before)
                if time.monotonic() >= self._next_prune:
                    self._next_prune = time.monotonic() + PRUNE_EVERY_SECONDS
                    await prune_user_changes(self._store, self.retention_seconds)
            except BuglessError as exc:  # the database is away: the cache falls back
                self.supervised.unavailable(exc)
                continue
            except Exception as exc:  # a bug, an untranslated error: logged and counted once
                wait = self.supervised.failed(exc, at_least=self.poll_seconds)
                continue
            self.supervised.succeeded()
            wait = max(0.0, began + self.poll_seconds - time.monotonic())


def _lag_seconds(follower: weakref.ref[UserFeedFollower]) -> float:
    """The follower's lag at scrape time (0 once it is gone)."""
    live = follower()
    return 0.0 if live is None else live.lag_seconds()


def _versions_behind(follower: weakref.ref[UserFeedFollower]) -> float:
    """The follower's versions behind at scrape time (0 once it is gone)."""
    live = follower()
    return 0.0 if live is None else float(live.versions_behind())
