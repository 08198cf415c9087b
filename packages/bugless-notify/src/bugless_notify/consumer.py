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

Each recipient is checked **as that recipient**, with their own identity:
the notifier gets each recipient's signed identity assertion from the
Authenticator (``IssueAssertion``, cached) and hands them to the Model's
``GetNotificationViews``, which says which of them may see the issue (their
groups count; a group list the notifier names is never believed) and which
of its hotlists and components each may see. Someone who may not see the
issue is never told, and a notification shows only what its recipient may
see.

Speed: per issue of a batch, one Model read for the issue and its entries,
one for its recipients (however many), one Authenticator look-up of names
(and one per change with ``@mentions``); saved searches are matched once
per batch (:mod:`bugless_notify._saved_searches`); issues are worked on
concurrently.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from bugless_core.clients import ActingFor, acting_model, call
from bugless_core.errors import (
    BuglessError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from bugless_core.issue_labels import holds_people
from bugless_core.mentions import mentioned_usernames
from bugless_core.migrations import quote_schema
from bugless_core.notification_channel import NotificationMessage
from bugless_notify._saved_searches import MatchChanges, SavedSearchMatcher
from bugless_notify.component_webhooks import (
    ComponentEndpoint,
    ComponentWebhookStore,
    endpoints_for,
)
from bugless_notify.digest import DigestStore
from bugless_notify.queue import DeliveryQueue, NewDelivery
from bugless_notify.recipients import (
    Candidate,
    candidates,
    mention_texts,
    wanted,
)
from bugless_notify.render import ChangeNotice, Person, Reason, render_notification
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
    #: Mails of people who chose a daily digest: (user id, the mail), kept for it.
    digest: list[tuple[str, NewDelivery]] = field(default_factory=list)
    matches_added: set[tuple[int, str, int]] = field(default_factory=set)
    matches_removed: set[tuple[int, str, int]] = field(default_factory=set)
    #: Enabled component webhook endpoints (read once per batch).
    webhooks: list[ComponentEndpoint] = field(default_factory=list)
    #: Component id -> its parent's id (0: top level), looked up once per batch.
    parents: dict[int, int] = field(default_factory=dict)


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
        self._acting_for = ActingFor(auth)
        self._searches = SavedSearchMatcher(
            model, acting_model(model, self._acting_for), auth, NOTIFIER, options.schema
        )
        self.options = options
        self._digests = DigestStore(options.schema)
        self._webhooks = ComponentWebhookStore(options.schema)
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

    async def start_at_head_if_restored(self) -> None:
        """Before the notifier reports ready: a cursor beyond the feed's head goes back to it.

        A Model restored from a backup older than the queue leaves the cursor
        beyond its feed. :meth:`_step` finds that too, but only on its first
        read, and takes the head *then*: a change made between the start and
        that read would be inside the skipped span. Checked here, before the
        notifier says it is ready, every change made once it is up is after
        the cursor, as on a first start (:meth:`ensure_cursor`).
        """
        position = await self.ensure_cursor()
        try:
            head = await call(
                self._model.read_feed, v1.ReadFeedRequest(caller=NOTIFIER, head_only=True)
            )
        except (BuglessError, OSError) as exc:
            # The Model is not reachable yet: start anyway; _step finds a
            # restored feed on its first read, as it always could.
            _log.warning("feed consumer: the feed's head is unknown at start: %s", exc)
            return
        if position > head.head_position:
            _log.error(
                "feed consumer: the cursor %d is beyond the Model's feed head %d (was the "
                "Model's database restored from a backup?); starting again at the head",
                position,
                head.head_position,
            )
            await self._commit(position, head.head_position, _Batch())

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
        except InvalidArgument as exc:
            # The cursor is beyond the feed's head: the Model's database was
            # restored to an earlier moment than this queue's. Waiting for the
            # feed to pass the cursor would skip every change up to it, so the
            # cursor goes back to the head and the changes from now on are
            # notified (those between the backup and the loss are gone).
            if (
                exc.metadata.get("field") != "after_position"
                or not (head_text := exc.metadata.get("head_position", "")).isdigit()
            ):
                raise
            _log.error(
                "feed consumer: the cursor %d is beyond the Model's feed head %s (was the "
                "Model's database restored from a backup?); starting again at the head",
                position,
                head_text,
            )
            await self._commit(position, int(head_text), _Batch())
            return
        if not answer.changes:
            return
        batch = _Batch()
        # One issue's entries are worked on together (one Model read for all
        # of them, one for their recipients), issues concurrently.
        by_issue: dict[int, list[tuple[int, str]]] = {}
        for change in answer.changes:
            for entry in change.entries:
                by_issue.setdefault(entry.issue_id, []).append((entry.version, change.author))
        async with self._pool.acquire() as conn:
            matches = MatchChanges()
            searches = await self._searches.changes(conn, list(by_issue), matches)
            batch.webhooks = await self._webhooks.enabled(conn)
        batch.matches_added, batch.matches_removed = matches.added, matches.removed
        limit = asyncio.Semaphore(ISSUES_AT_ONCE)

        async def one_issue(issue_id: int, entries: list[tuple[int, str]]) -> None:
            async with limit:
                await self._issue(issue_id, entries, searches.get(issue_id, []), batch)

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
            await self._digests.add(conn, batch.digest)
            if batch.matches_added:
                await conn.executemany(self._add_match_sql, sorted(batch.matches_added))
            if batch.matches_removed:
                await conn.executemany(self._remove_match_sql, sorted(batch.matches_removed))
            await conn.execute(self._advance_sql, CURSOR, to)

    # ---- one issue's entries ----

    async def _issue(
        self,
        issue_id: int,
        entries: list[tuple[int, str]],
        searches: list[tuple[str, str]],
        batch: _Batch,
    ) -> None:
        """Queue the mails of ``entries`` (version, feed author) of one issue."""
        try:
            views = await call(
                self._model.get_notification_views,
                v1.GetNotificationViewsRequest(
                    caller=NOTIFIER, issue_id=issue_id, versions=[v for v, _ in entries]
                ),
            )
        except NotFound:
            return
        issue = views.issue
        audience = views.audience or v1.IssueAudience()
        if issue is None:
            return
        found = {e.version: e for e in views.entries}
        if batch.webhooks:
            await self._webhook_deliveries(issue, views, entries, batch)
        work: list[tuple[v1.HistoryEntry, str, list[Candidate]]] = []
        # Saved-search changes are the issue's state now, not one entry's:
        # they go with the first entry of the batch that still exists.
        pending = searches
        for version, author in entries:
            entry = found.get(version)
            if entry is None:
                continue
            mentioned = await self._user_ids(mentioned_usernames(*mention_texts(issue, entry)))
            people = [
                c
                for c in candidates(issue, entry, audience, mentioned, pending)
                if c.user_id not in audience.muted_by
            ]
            pending = []
            if people:
                work.append((entry, entry.author or author, people))
        if not work:
            return
        checked = await self._check(issue_id, {c.user_id for _, _, ps in work for c in ps})
        if not checked.viewers:
            return
        viewers = {v.user_id: v for v in checked.viewers}
        by_user = {s.user_id: s for s in checked.settings}
        chosen = [
            (entry, c)
            for entry, author, people in work
            for c in people
            if c.user_id in viewers
            and wanted(
                c,
                by_user.get(c.user_id, v1.NotificationSettings(channel="email")),
                author=author,
                issue_id=issue_id,
                notify_authors=self.options.notify_authors,
            )
        ]
        if not chosen:
            return
        named = {c.user_id for _, c in chosen}
        for entry, _, _ in work:
            named |= _people_named(issue, entry)
        users = await self._users(sorted(named))
        names = {i: Person(u.display_name, u.username) for i, u in users.items()}
        paths = dict(checked.component_paths or views.component_paths)
        for entry, candidate in chosen:
            user = users.get(candidate.user_id)
            if user is None or user.disabled or not user.email:
                continue
            viewer = viewers[candidate.user_id]
            mail = self._delivery(
                candidate,
                user=user,
                issue=issue,
                entry=entry,
                viewer=viewer,
                people=names,
                paths=paths,
                hotlist_names=dict(checked.hotlist_names),
            )
            chosen_settings = by_user.get(candidate.user_id)
            if chosen_settings is not None and chosen_settings.digest == v1.DigestMode.DAILY:
                batch.digest.append((candidate.user_id, mail))
            else:
                batch.deliveries.append(mail)

    async def _webhook_deliveries(
        self,
        issue: v1.Issue,
        views: v1.NotificationViews,
        entries: list[tuple[int, str]],
        batch: _Batch,
    ) -> None:
        """Queue a delivery per entry for each endpoint of the issue's component (or above).

        Each endpoint sees the issue as the admin who added it: checked with
        their assertion like a mail recipient (see
        :mod:`bugless_notify.component_webhooks`).
        """
        ancestors = await self._ancestors(issue.component_id, batch.parents)
        targets = endpoints_for(batch.webhooks, issue.component_id, ancestors)
        if not targets:
            return
        checked = await self._check(issue.id, {t.created_by for t in targets})
        viewers = {v.user_id: v for v in checked.viewers}
        paths = dict(checked.component_paths or views.component_paths)
        found = {e.version: e for e in views.entries}
        named: set[str] = set()
        for version, _ in entries:
            if version in found:
                named |= _people_named(issue, found[version])
        users = await self._users(sorted(named)) if named else {}
        people = {i: Person(u.display_name, u.username) for i, u in users.items()}
        for target in targets:
            viewer = viewers.get(target.created_by)
            if viewer is None:
                continue
            for version, _ in entries:
                entry = found.get(version)
                if entry is None:
                    continue
                message = self._render(
                    Candidate(target.created_by, Reason.WEBHOOK),
                    issue=issue,
                    entry=entry,
                    viewer=viewer,
                    people=people,
                    paths=paths,
                    hotlist_names=dict(checked.hotlist_names),
                    webhook_forms=True,
                )
                batch.deliveries.append(
                    NewDelivery(
                        delivery_id=f"change-{issue.id}-{entry.version}/webhook/{target.name}",
                        channel="webhook",
                        recipient=target.name,
                        message=message,
                        recipient_name=f"webhook {target.name}",
                    )
                )

    async def _ancestors(self, component_id: int, parents: dict[int, int]) -> list[int]:
        """The ids above ``component_id``, nearest first (looked up as the notifier)."""
        found: list[int] = []
        current = component_id
        while current and len(found) < 64:
            if current not in parents:
                try:
                    component = await call(
                        self._model.get_component,
                        v1.GetComponentRequest(caller=NOTIFIER, component_id=current),
                    )
                except NotFound:
                    parents[current] = 0
                else:
                    parents[current] = component.parent_id
            current = parents[current]
            if current:
                found.append(current)
        return found

    async def _check(self, issue_id: int, user_ids: set[str]) -> v1.NotificationViews:
        """Which of ``user_ids`` may see the issue, checked with their own identities.

        Each recipient's identity assertion (``IssueAssertion``, cached until
        shortly before it expires) goes to the Model, which takes their groups
        and permissions from it; a person with none (unknown, disabled) is not
        a recipient.
        """
        ids = sorted(user_ids)
        assertions = await asyncio.gather(
            *(self._assertion(u) for u in ids), return_exceptions=False
        )
        known = [(u, a) for u, a in zip(ids, assertions, strict=True) if a is not None]
        return await call(
            self._model.get_notification_views,
            v1.GetNotificationViewsRequest(
                caller=NOTIFIER,
                issue_id=issue_id,
                viewer_assertions=[a for _, a in known if a],
                viewers=[v1.Caller(user_id=u) for u, _ in known],
            ),
        )

    async def _assertion(self, user_id: str) -> str | None:
        """``user_id``'s assertion; ``""`` where the Authenticator signs none; None: no user."""
        try:
            return await self._acting_for.assertion(user_id)
        except (NotFound, PermissionDenied):
            return None

    def _delivery(
        self,
        candidate: Candidate,
        *,
        user: v1.User,
        issue: v1.Issue,
        entry: v1.HistoryEntry,
        viewer: v1.NotificationViewer,
        people: dict[str, Person],
        paths: dict[int, str],
        hotlist_names: dict[int, str],
    ) -> NewDelivery:
        """The mail for one recipient, with only what *they* may see."""
        message = self._render(
            candidate,
            issue=issue,
            entry=entry,
            viewer=viewer,
            people=people,
            paths=paths,
            hotlist_names=hotlist_names,
            webhook_forms=False,
        )
        return NewDelivery(
            delivery_id=f"change-{issue.id}-{entry.version}/email/{candidate.user_id}",
            channel="email",
            recipient=user.email,
            message=message,
            recipient_name=user.display_name or user.username,
        )

    def _render(
        self,
        candidate: Candidate,
        *,
        issue: v1.Issue,
        entry: v1.HistoryEntry,
        viewer: v1.NotificationViewer,
        people: dict[str, Person],
        paths: dict[int, str],
        hotlist_names: dict[int, str],
        webhook_forms: bool,
    ) -> NotificationMessage:
        """One change rendered with only what ``viewer`` may see."""
        seen = dataclasses.replace(
            issue, hotlist_ids=list(viewer.hotlist_ids), starred=viewer.starred
        )
        shown = dataclasses.replace(
            entry,
            changes=[c for c in (_visible_change(c, seen) for c in entry.changes) if c is not None],
        )
        visible = set(viewer.component_ids)
        return render_notification(
            ChangeNotice(
                issue=seen,
                entry=shown,
                reason=candidate.reason,
                reason_detail=candidate.detail,
                public_url=self.options.public_url,
                people=people,
                components={i: p for i, p in paths.items() if i in visible},
                hotlists={i: hotlist_names[i] for i in viewer.hotlist_ids if i in hotlist_names},
            ),
            webhook_forms=webhook_forms,
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


def _people_named(issue: v1.Issue, entry: v1.HistoryEntry) -> set[str]:
    """Every person the issue and the entry name (for their display names)."""
    refs = {issue.reporter, issue.assignee, issue.verifier, entry.author, *issue.cc}
    for change in entry.changes:
        if holds_people(change):
            refs |= {change.old_value, change.new_value, *change.added, *change.removed}
    return {r for r in refs if r}


def _visible_change(change: v1.FieldChange, issue: v1.Issue) -> v1.FieldChange | None:
    """A change as the recipient may see it (None: not at all).

    Hotlist changes show only hotlists the recipient sees on the issue.
    """
    if change.field != "hotlist_ids":
        return change
    visible = {str(h) for h in issue.hotlist_ids}
    added = [h for h in change.added if h in visible]
    return dataclasses.replace(change, added=added, removed=[]) if added else None
