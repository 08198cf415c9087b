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

A database error skips one poll (logged when the outage starts, once a
minute while it lasts and when it ends, by the loop's
:class:`~bugless_core.supervision.OutageLog`: the directory's cache falls
back to ``cache_ttl_seconds`` meanwhile, see
:mod:`bugless_core.user_changes`); any other error is supervised as
``auth.user_changes`` (:class:`~bugless_core.supervision.SupervisedLoop`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry

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
    rows = await store.run(
        lambda conn: conn.fetch(sql.READ_USER_CHANGES, after_version, page_rows - 1),
        transaction=False,
    )
    head, pruned = rows[0]["head"], rows[0]["pruned"]
    if after_version <= 0:
        return v1.UserChanges(version=head)
    if after_version < pruned or after_version > head:
        return v1.UserChanges(version=head, reset=True)
    changed = [r for r in rows if r["version"] is not None]
    if not changed:
        return v1.UserChanges(version=head)
    version = changed[-1]["version"]
    return v1.UserChanges(
        user_ids=list(dict.fromkeys(r["user_id"] for r in changed)),
        version=max(version, after_version),
        more=version < head,
    )


async def prune_user_changes(store: IdentityStore, retention_seconds: float) -> None:
    """Remove the changes logged more than ``retention_seconds`` ago (raising ``pruned``)."""
    await store.run(
        lambda conn: conn.execute(sql.PRUNE_USER_CHANGES, retention_seconds), transaction=False
    )


class UserFeedFollower:
    """Follows the feed from the database into a replica's :class:`UserDirectory`.

    Args:
        store: The database.
        directory: The cache that forgets the users the feed names.
        poll_seconds: How often to read the feed.
        retention_seconds: Changes older than this are pruned.
        metrics_registry: Where the supervision counts unexpected failures.
    """

    def __init__(
        self,
        store: IdentityStore,
        directory: UserDirectory,
        *,
        poll_seconds: float,
        retention_seconds: float,
        metrics_registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self._store = store
        self._directory = directory
        self.poll_seconds = poll_seconds
        self.retention_seconds = retention_seconds
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._next_prune = 0.0
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

        Raises:
            Unavailable: the database cannot be reached (nothing applied from
                the failed read; earlier pages stay applied).
        """
        following = self._directory.following
        while True:
            began = following.now()
            if following.version == 0:
                head = await read_user_changes(self._store, 0)
                self._directory.start_following(head.version, began)
                return
            changes = await read_user_changes(self._store, following.version)
            if changes.reset:
                _log.warning(
                    "the users' change feed was pruned past version %d: forgetting every user",
                    following.version,
                )
                self._directory.start_following(changes.version, began, forget=True)
                return
            self._directory.apply_changes(changes.user_ids, changes.version, began)
            if not changes.more:
                return

    async def _every_poll(self) -> None:
        wait = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), wait)
            if self._stopping.is_set():
                return
            wait = self.poll_seconds
            try:
                await self.poll_once()
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
