"""The feed consumer: the Model's change feed in, queued deliveries out.

One replica at a time consumes (it holds a session advisory lock on a
connection of its own; when it dies, PostgreSQL drops the lock with the
connection and another replica takes over within a second or two). Every
replica runs a :class:`~bugless_notify.worker.DeliveryWorker`, so delivering
is shared by all of them.

For each batch of feed changes the consumer computes every delivery, then in
**one transaction**: locks its cursor row, checks it still holds the position
it read from (a replica that lost the lock mid-batch finds it moved and drops
its work), enqueues the deliveries (idempotent keys
``change-<issue>-<version>/email/<user>``) and advances the cursor. A crash
anywhere before the commit replays the batch; one after it has nothing left
to do. So no change is skipped, and a change processed twice is never queued
twice.

Each recipient is checked **as that recipient** through the Model (GetIssue
with their caller): someone who may not see the issue is never told, and the
issue, the history entry and the names in a notification are those the
recipient may see.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from bugless_core.clients import call, resolve_query
from bugless_core.errors import BuglessError, FailedPrecondition, NotFound
from bugless_core.issue_labels import holds_people
from bugless_core.mentions import mentioned_usernames
from bugless_core.migrations import quote_schema
from bugless_core.search import QuerySyntaxError, parse_query
from bugless_core.search.build import all_of, term
from bugless_notify.queue import DeliveryQueue, NewDelivery
from bugless_notify.recipients import (
    Candidate,
    candidates,
    mention_texts,
    wanted,
)
from bugless_notify.render import ChangeNotice, Person, render_notification
from bugless_proto import v1

_log = logging.getLogger("bugless.notify")

#: How the notifier calls the Model for what no single person may see (the
#: feed, who follows an issue, everyone's settings).
NOTIFIER = v1.Caller(user_id="bugless-notify", admin=True)
CURSOR = "main"
#: Wait for a commit this long per ReadFeed when the feed is idle.
FEED_WAIT_MS = 2000
#: Issues of one batch worked on at once.
ISSUES_AT_ONCE = 32


@dataclass
class ConsumerOptions:
    """How the consumer works (from :class:`~bugless_notify.settings.NotifierSettings`).

    Attributes:
        public_url: The web UI's base URL.
        notify_authors: Tell people about their own changes.
        batch: Feed changes per transaction.
        schema: The notifier's schema.
    """

    public_url: str
    notify_authors: bool = False
    batch: int = 100
    schema: str = "bugless_notify"


@dataclass
class _Batch:
    deliveries: list[NewDelivery] = field(default_factory=list)
    matches_added: set[tuple[int, str, int]] = field(default_factory=set)
    matches_removed: set[tuple[int, str, int]] = field(default_factory=set)


class FeedConsumer:
    """Reads the feed from the durable cursor and queues deliveries (see the module)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        queue: DeliveryQueue,
        model: v1.ModelStub,
        auth: v1.AuthenticatorStub,
        options: ConsumerOptions,
    ) -> None:
        """Work on ``pool`` (the notifier's database) with the given stubs."""
        self._pool = pool
        self._queue = queue
        self._model = model
        self._auth = auth
        self.options = options
        schema = quote_schema(options.schema)
        self._cursor_sql = f"SELECT position FROM {schema}.feed_cursor WHERE name = $1"
        self._lock_cursor_sql = f"{self._cursor_sql} FOR UPDATE"
        self._init_cursor_sql = (
            f"INSERT INTO {schema}.feed_cursor (name, position) VALUES ($1, $2) "
            "ON CONFLICT (name) DO NOTHING"
        )
        self._advance_sql = (
            f"UPDATE {schema}.feed_cursor SET position = $2, updated_at = now() WHERE name = $1"
        )
        self._matches_sql = (
            f"SELECT 1 FROM {schema}.saved_search_matches "
            "WHERE saved_search_id = $1 AND user_id = $2 AND issue_id = $3"
        )
        self._add_match_sql = (
            f"INSERT INTO {schema}.saved_search_matches VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
        )
        self._remove_match_sql = (
            f"DELETE FROM {schema}.saved_search_matches "
            "WHERE saved_search_id = $1 AND user_id = $2 AND issue_id = $3"
        )
        self._lock_key = f"bugless-notify-feed:{options.schema}"
        self._stopping = asyncio.Event()
        #: Changes handled by this process (for tests and metrics).
        self.handled = 0

    def stop(self) -> None:
        """Finish the batch in hand, then return from :meth:`run`."""
        self._stopping.set()

    async def run(self) -> None:
        """Consume while this replica holds the consumer lock; retry on errors."""
        while not self._stopping.is_set():
            try:
                await self._lead()
            except (BuglessError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                _log.warning("feed consumer: %s; retrying", exc)
                await self._sleep(1.0)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _lead(self) -> None:
        """Take the consumer lock (or wait for it), then consume until stopped."""
        async with self._pool.acquire() as conn:
            await self._lead_on(conn)

    async def _lead_on(self, conn: Any) -> None:
        """Consume on ``conn``'s session lock; a dead replica's lock goes with its connection."""
        got = await conn.fetchval(
            "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", self._lock_key
        )
        if not got:
            await self._sleep(1.0)
            return
        try:
            while not self._stopping.is_set() and not conn.is_closed():
                await self._step()
        finally:
            with contextlib.suppress(Exception):
                await conn.execute(
                    "SELECT pg_advisory_unlock(hashtextextended($1, 0))", self._lock_key
                )

    async def ensure_cursor(self) -> int:
        """The cursor's position; a first start begins at the feed's head."""
        async with self._pool.acquire() as conn:
            position = await conn.fetchval(self._cursor_sql, CURSOR)
            if position is not None:
                return int(position)
            head = await call(
                self._model.read_feed, v1.ReadFeedRequest(caller=NOTIFIER, head_only=True)
            )
            await conn.execute(self._init_cursor_sql, CURSOR, head.head_position)
            return int(await conn.fetchval(self._cursor_sql, CURSOR))

    async def _step(self) -> None:
        """One batch: read, compute, then enqueue and advance in one transaction."""
        position = await self.ensure_cursor()
        request = v1.ReadFeedRequest(
            caller=NOTIFIER,
            after_position=position,
            max_changes=self.options.batch,
            wait_ms=FEED_WAIT_MS,
        )
        try:
            answer = await call(self._model.read_feed, request)
        except FailedPrecondition as exc:
            # Changes were pruned before we read them: they cannot be
            # notified any more. Say so loudly and carry on from the head.
            head = int(exc.metadata.get("head_position", position))
            _log.error("feed consumer: %s; skipping to position %d", exc.message, head)
            await self._commit(position, head, _Batch())
            return
        if not answer.changes:
            return
        batch = _Batch()
        # Issues are worked on concurrently (each is a dozen calls to the Model
        # and the Authenticator); one issue's entries stay in version order.
        by_issue: dict[int, list[tuple[int, str]]] = {}
        for change in answer.changes:
            for entry in change.entries:
                by_issue.setdefault(entry.issue_id, []).append((entry.version, change.author))
        limit = asyncio.Semaphore(ISSUES_AT_ONCE)

        async def one_issue(issue_id: int, entries: list[tuple[int, str]]) -> None:
            async with limit:
                for version, author in entries:
                    await self._entry(issue_id, version, author, batch)

        await asyncio.gather(*(one_issue(i, e) for i, e in by_issue.items()))
        await self._commit(position, answer.changes[-1].position, batch)
        self.handled += len(answer.changes)

    async def _commit(self, read_from: int, to: int, batch: _Batch) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            current = await conn.fetchval(self._lock_cursor_sql, CURSOR)
            if current != read_from:
                _log.info("feed consumer: cursor moved to %s under us; batch dropped", current)
                return
            await self._queue.enqueue(conn, batch.deliveries)
            for key in batch.matches_added:
                await conn.execute(self._add_match_sql, *key)
            for key in batch.matches_removed:
                await conn.execute(self._remove_match_sql, *key)
            await conn.execute(self._advance_sql, CURSOR, to)

    # ---- one history entry ----

    async def _entry(self, issue_id: int, version: int, author: str, batch: _Batch) -> None:
        try:
            issue = await call(
                self._model.get_issue, v1.GetIssueRequest(caller=NOTIFIER, issue_id=issue_id)
            )
        except NotFound:
            return
        entry = await self._history_entry(NOTIFIER, issue_id, version)
        if entry is None:
            return
        audience = await call(
            self._model.get_issue_audience,
            v1.GetIssueAudienceRequest(caller=NOTIFIER, issue_id=issue_id),
        )
        mentioned = await self._user_ids(mentioned_usernames(*mention_texts(issue, entry)))
        searches = await self._saved_search_changes(issue_id, batch)
        people = [
            c
            for c in candidates(issue, entry, audience, mentioned, searches)
            if c.user_id not in audience.muted_by
        ]
        if not people:
            return
        settings = await call(
            self._model.get_notification_settings,
            v1.GetNotificationSettingsRequest(
                caller=NOTIFIER, user_ids=[c.user_id for c in people]
            ),
        )
        by_user = {s.user_id: s for s in settings.settings}
        chosen = [
            c
            for c in people
            if wanted(
                c,
                by_user.get(c.user_id, v1.NotificationSettings(channel="email")),
                author=entry.author or author,
                issue_id=issue_id,
                notify_authors=self.options.notify_authors,
            )
        ]
        users = await self._users([c.user_id for c in chosen])
        for candidate in chosen:
            user = users.get(candidate.user_id)
            if user is None or user.disabled or not user.email:
                continue
            delivery = await self._delivery(candidate, user, issue_id, version)
            if delivery is not None:
                batch.deliveries.append(delivery)

    async def _history_entry(
        self, caller: v1.Caller, issue_id: int, version: int
    ) -> v1.HistoryEntry | None:
        """Entry ``version`` as ``caller`` may read it (pages of 500 until found)."""
        token = ""
        while True:
            page = await call(
                self._model.list_history,
                v1.ListHistoryRequest(
                    caller=caller,
                    issue_id=issue_id,
                    page=v1.PageRequest(page_size=500, page_token=token),
                ),
            )
            for entry in page.entries:
                if entry.version == version:
                    return entry
            token = page.next_page_token
            if not token:
                return None

    async def _delivery(
        self, candidate: Candidate, user: v1.User, issue_id: int, version: int
    ) -> NewDelivery | None:
        """The mail for one recipient, from what *they* may see; None if they may not."""
        caller = v1.Caller(user_id=candidate.user_id)
        try:
            issue = await call(
                self._model.get_issue, v1.GetIssueRequest(caller=caller, issue_id=issue_id)
            )
            entry = await self._history_entry(caller, issue_id, version)
        except NotFound:
            return None
        if entry is None:
            return None
        entry.changes = [c for c in entry.changes if _visible_change(c, issue)]
        names = await self._people(issue, entry)
        components = await self._component_paths(caller, issue, entry)
        message = render_notification(
            ChangeNotice(
                issue=issue,
                entry=entry,
                reason=candidate.reason,
                reason_detail=candidate.detail,
                public_url=self.options.public_url,
                people=names,
                components=components,
            )
        )
        return NewDelivery(
            delivery_id=f"change-{issue_id}-{version}/email/{candidate.user_id}",
            channel="email",
            recipient=user.email,
            message=message,
            recipient_name=user.display_name or user.username,
        )

    # ---- look-ups ----

    async def _users(self, user_ids: Sequence[str]) -> dict[str, v1.User]:
        ids = sorted({u for u in user_ids if u})
        if not ids:
            return {}
        found = await call(self._auth.get_users, v1.GetUsersRequest(user_ids=ids))
        return {u.user_id: u for u in found.users}

    async def _user_ids(self, usernames: Sequence[str]) -> list[str]:
        if not usernames:
            return []
        found = await call(
            self._auth.lookup_users, v1.LookupUsersRequest(usernames=list(usernames))
        )
        return [u.user_id for u in found.users]

    async def _people(self, issue: v1.Issue, entry: v1.HistoryEntry) -> dict[str, Person]:
        refs = {issue.reporter, issue.assignee, issue.verifier, entry.author, *issue.cc}
        for change in entry.changes:
            if holds_people(change):
                refs |= {change.old_value, change.new_value, *change.added, *change.removed}
        users = await self._users([r for r in refs if r])
        return {i: Person(u.display_name, u.username) for i, u in users.items()}

    async def _component_paths(
        self, caller: v1.Caller, issue: v1.Issue, entry: v1.HistoryEntry
    ) -> dict[int, str]:
        ids = {issue.component_id}
        for change in entry.changes:
            if change.field == "component_id":
                ids |= {int(v) for v in (change.old_value, change.new_value) if v.isdigit()}
        paths: dict[int, str] = {}
        for component_id in sorted(i for i in ids if i):
            try:
                component = await call(
                    self._model.get_component,
                    v1.GetComponentRequest(caller=caller, component_id=component_id),
                )
            except NotFound:
                continue
            paths[component_id] = component.path
        return paths

    async def _saved_search_changes(self, issue_id: int, batch: _Batch) -> list[tuple[str, str]]:
        """Subscribers whose saved search ``issue_id`` newly matches or stopped matching."""
        out: list[tuple[str, str]] = []
        token = ""
        while True:
            page = await call(
                self._model.list_saved_search_subscriptions,
                v1.ListSavedSearchSubscriptionsRequest(
                    caller=NOTIFIER, page=v1.PageRequest(page_size=500, page_token=token)
                ),
            )
            for subscription in page.subscriptions:
                changed = await self._match_changed(subscription, issue_id, batch)
                if changed and subscription.saved_search is not None:
                    out.append((subscription.user_id, subscription.saved_search.name))
            token = page.next_page_token
            if not token:
                return out

    async def _match_changed(
        self, subscription: v1.SavedSearchSubscription, issue_id: int, batch: _Batch
    ) -> bool:
        search = subscription.saved_search
        if search is None:
            return False
        user = subscription.user_id
        try:
            structured = await resolve_query(parse_query(search.query), self._auth, me=user)
        except (QuerySyntaxError, BuglessError):
            return False
        only = all_of(
            structured.filter or v1.SearchNode(),
            term(v1.SearchField.ID, v1.SearchOperator.EQ, issue_id),
        )
        found = await call(
            self._model.search_issues,
            v1.SearchIssuesRequest(
                caller=v1.Caller(user_id=user),
                query=v1.StructuredQuery(filter=only),
                page=v1.PageRequest(page_size=1),
            ),
        )
        matches = bool(found.issues)
        key = (search.id, user, issue_id)
        async with self._pool.acquire() as conn:
            matched = await conn.fetchval(self._matches_sql, *key) is not None
        if key in batch.matches_added:
            matched = True
        if key in batch.matches_removed:
            matched = False
        if matches == matched:
            return False
        if matches:
            batch.matches_added.add(key)
            batch.matches_removed.discard(key)
        else:
            batch.matches_removed.add(key)
            batch.matches_added.discard(key)
        return True


def _visible_change(change: v1.FieldChange, issue: v1.Issue) -> bool:
    """Hotlist changes show only hotlists the recipient sees on the issue."""
    if change.field != "hotlist_ids":
        return True
    visible = {str(h) for h in issue.hotlist_ids}
    change.added = [h for h in change.added if h in visible]
    change.removed = []
    return bool(change.added)
