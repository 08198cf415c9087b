"""The backend calls of issue 16: stars, subscriptions, notification settings.

A mixin of :class:`~bugless_model_postgres.PostgresBackend` (like
:mod:`._edit_calls`). None of these writes is a change of an issue: a star,
a subscription or a mute belongs to the person, so none adds a history entry,
bumps a version or appears in the change feed. ``issues.star_count`` is kept
in the same transaction as the star row.

Two calls answer the notifier only (admin callers): who follows an issue
(:meth:`FollowCalls.get_issue_audience`), and every saved-search
subscription. They do not check visibility: the notifier checks each
recipient through the Model as that recipient.
"""

from __future__ import annotations

import json
from typing import Any

from bugless_core.errors import NotFound, PermissionDenied, VersionConflict
from bugless_model_postgres import _collection_queries as cq
from bugless_model_postgres._calls_base import BackendCalls
from bugless_model_postgres._components import visible_component
from bugless_model_postgres._context import WriteContext, fetch_issue_rows, issue_not_found
from bugless_model_postgres._convert import Conn, saved_search_from_row
from bugless_model_postgres._database import translated_errors
from bugless_model_postgres._hotlists import saved_search_visible
from bugless_model_postgres._paging import KeysetPage
from bugless_proto import v1

ADD_STAR = """
WITH added AS (
    INSERT INTO issue_stars (issue_id, user_id, created_at) VALUES ($1, $2, $3)
    ON CONFLICT DO NOTHING RETURNING issue_id
)
UPDATE issues SET star_count = star_count + 1
 WHERE id = $1 AND EXISTS (SELECT 1 FROM added)
"""
REMOVE_STAR = """
WITH removed AS (
    DELETE FROM issue_stars WHERE issue_id = $1 AND user_id = $2 RETURNING issue_id
)
UPDATE issues SET star_count = star_count - 1
 WHERE id = $1 AND EXISTS (SELECT 1 FROM removed)
"""
STAR_COUNT = "SELECT star_count FROM issues WHERE id = $1"

SUBSCRIBE_COMPONENT = """
INSERT INTO component_subscriptions (user_id, component_id, include_subtree, created_at)
VALUES ($1, $2, $3, $4)
ON CONFLICT (user_id, component_id) DO UPDATE SET include_subtree = excluded.include_subtree
"""
UNSUBSCRIBE_COMPONENT = (
    "DELETE FROM component_subscriptions WHERE user_id = $1 AND component_id = $2"
)
SUBSCRIBE_SAVED_SEARCH = """
INSERT INTO saved_search_subscriptions (user_id, saved_search_id, created_at)
VALUES ($1, $2, $3) ON CONFLICT DO NOTHING
"""
UNSUBSCRIBE_SAVED_SEARCH = (
    "DELETE FROM saved_search_subscriptions WHERE user_id = $1 AND saved_search_id = $2"
)
COMPONENT_SUBSCRIPTIONS_OF = """
SELECT component_id, include_subtree FROM component_subscriptions
 WHERE user_id = $1 ORDER BY component_id
"""
SAVED_SEARCH_SUBSCRIPTIONS_OF = """
SELECT saved_search_id FROM saved_search_subscriptions WHERE user_id = $1 ORDER BY saved_search_id
"""

SETTINGS_OF = """
SELECT user_id, settings, version FROM notification_settings WHERE user_id = ANY ($1::text[])
"""
MUTES_OF = """
SELECT user_id, issue_id FROM issue_mutes WHERE user_id = ANY ($1::text[]) ORDER BY issue_id
"""
#: Save user $1's settings $2 at $3 where version $4 is current (0: any is);
#: returns the new version, or no row when $4 is not current. The version is
#: checked and bumped by this one statement, on the row it writes: of two
#: concurrent saves from the same version, the second waits for the first's
#: row (its insert or update) and then finds that version gone (under READ
#: COMMITTED ON CONFLICT DO UPDATE reads the latest committed row; under
#: SERIALIZABLE the second fails with 40001 and its retry finds it gone).
#: With no row the current version is 1 (the defaults): the insert happens
#: only when $4 allows that, or when a row exists and the conflict clause
#: decides.
SAVE_SETTINGS = """
INSERT INTO notification_settings AS s (user_id, settings, modified_at, version)
SELECT $1, $2::jsonb, $3, 2
 WHERE $4::bigint IN (0, 1)
    OR EXISTS (SELECT 1 FROM notification_settings WHERE user_id = $1)
ON CONFLICT (user_id) DO UPDATE
   SET settings = excluded.settings, modified_at = excluded.modified_at, version = s.version + 1
 WHERE $4::bigint = 0 OR s.version = $4::bigint
RETURNING s.version
"""
SETTINGS_VERSION = "SELECT version FROM notification_settings WHERE user_id = $1"
MUTE = """
INSERT INTO issue_mutes (user_id, issue_id, created_at) VALUES ($1, $2, $3)
ON CONFLICT DO NOTHING
"""
UNMUTE = "DELETE FROM issue_mutes WHERE user_id = $1 AND issue_id = $2"

#: The subscriptions that reach the issue's component ``c``: on it, or on
#: an ancestor with include_subtree.
_REACHING = """component_subscriptions s
              WHERE s.component_id = c.id
                 OR (s.include_subtree AND s.component_id = ANY (c.path_ids))"""
#: Starrers, component subscribers (of the issue's component, and of its
#: ancestors with include_subtree) and muters of issue $1; and each
#: subscription reaching it (``subscription_users``, ``subscription_components``:
#: by user, nearest component first), of which :func:`audience_message` keeps
#: each subscriber's nearest.
AUDIENCE = f"""
SELECT ARRAY(SELECT user_id FROM issue_stars WHERE issue_id = i.id ORDER BY user_id)
           AS starred_by,
       ARRAY(SELECT DISTINCT s.user_id FROM {_REACHING}
              ORDER BY s.user_id) AS component_subscribers,
       ARRAY(SELECT user_id FROM issue_mutes WHERE issue_id = i.id ORDER BY user_id)
           AS muted_by,
       ARRAY(SELECT s.user_id FROM {_REACHING}
              ORDER BY s.user_id, s.component_id = c.id DESC,
                       array_position(c.path_ids, s.component_id) DESC NULLS LAST)
           AS subscription_users,
       ARRAY(SELECT s.component_id FROM {_REACHING}
              ORDER BY s.user_id, s.component_id = c.id DESC,
                       array_position(c.path_ids, s.component_id) DESC NULLS LAST)
           AS subscription_components
  FROM issues i JOIN components c ON c.id = i.component_id
 WHERE i.id = $1
"""


def audience_message(issue_id: int, row: Any) -> v1.IssueAudience:
    """Issue ``issue_id``'s audience from its :data:`AUDIENCE` row (``None``: nobody).

    ``subscribed_components`` keeps each subscriber's nearest subscription
    (the rows come nearest first): a person subscribed to both Infra and
    Infra>Net is told of an issue in Infra>Net for the second.
    """
    if row is None:
        return v1.IssueAudience(issue_id=issue_id)
    nearest: dict[str, int] = {}
    for user, component in zip(
        row["subscription_users"], row["subscription_components"], strict=True
    ):
        nearest.setdefault(user, component)
    return v1.IssueAudience(
        issue_id=issue_id,
        starred_by=list(row["starred_by"]),
        component_subscribers=list(row["component_subscribers"]),
        muted_by=list(row["muted_by"]),
        subscribed_components=nearest,
    )


#: Saved-search subscriptions after ($1, $2), at most $3.
LIST_SAVED_SEARCH_SUBSCRIPTIONS = """
SELECT s.user_id, ss.* FROM saved_search_subscriptions s
  JOIN saved_searches ss ON ss.id = s.saved_search_id
 WHERE (s.saved_search_id, s.user_id) > ($1, $2)
 ORDER BY s.saved_search_id, s.user_id
 LIMIT $3
"""


def settings_message(
    user_id: str, stored: Any, mutes: list[int], version: int = 1
) -> v1.NotificationSettings:
    """The stored JSON (or nothing: the defaults, version 1) as a message."""
    data = json.loads(stored) if isinstance(stored, str) else (stored or {})
    return v1.NotificationSettings(
        user_id=user_id,
        disabled_events=[v1.NotificationEvent(e) for e in data.get("disabled_events", [])],
        channel=data.get("channel", "email"),
        digest=v1.DigestMode(data.get("digest", v1.DigestMode.IMMEDIATE)),
        notify_own_changes=bool(data.get("notify_own_changes", False)),
        muted_issue_ids=mutes,
        version=version,
    )


async def read_settings(conn: Conn, user_ids: list[str]) -> list[v1.NotificationSettings]:
    """The settings (with mutes and version) of each of ``user_ids``, in that order."""
    stored = {r["user_id"]: r for r in await conn.fetch(SETTINGS_OF, user_ids)}
    mutes: dict[str, list[int]] = {}
    for r in await conn.fetch(MUTES_OF, user_ids):
        mutes.setdefault(r["user_id"], []).append(r["issue_id"])
    return [
        settings_message(u, stored[u]["settings"], mutes.get(u, []), stored[u]["version"])
        if u in stored
        else settings_message(u, None, mutes.get(u, []))
        for u in user_ids
    ]


def settings_json(settings: v1.NotificationSettings) -> str:
    """What is stored of a message (not the user id, not the mutes)."""
    return json.dumps(
        {
            "disabled_events": sorted({int(e) for e in settings.disabled_events}),
            "channel": settings.channel or "email",
            "digest": int(settings.digest or v1.DigestMode.IMMEDIATE),
            "notify_own_changes": settings.notify_own_changes,
        }
    )


async def _visible_issue(ctx: WriteContext, issue_id: int) -> None:
    if not await fetch_issue_rows(ctx.conn, ctx.caller, [issue_id]):
        raise issue_not_found(issue_id)


def settings_version_conflict(expected: int, current: int) -> VersionConflict:
    """The refusal of a save made from settings that changed since they were read."""
    return VersionConflict(
        f"notification settings are at version {current}, not {expected}: they were "
        "changed elsewhere since you read them; read them again and apply your change again",
        metadata={"expected_version": str(expected), "current_version": str(current)},
    )


def _admin_only(caller: v1.Caller, what: str) -> None:
    if not caller.admin:
        msg = f"{what} answers the notifier only (an admin caller)"
        raise PermissionDenied(msg)


class FollowCalls(BackendCalls):
    """Stars, subscriptions, settings and the notifier's audience calls."""

    async def star_issue(self, request: v1.StarIssueRequest) -> v1.StarIssueResponse:
        """Star a visible issue, or unstar any; idempotent.

        Unstarring needs no sight of the issue: a person whose star outlived
        their access (the issue moved into a component closed to them) can
        still take it back. Of an issue they cannot see the answer's count is
        0, the same whether it exists or not, so it tells them nothing.
        """

        async def work(ctx: WriteContext) -> int:
            if request.starred:
                await _visible_issue(ctx, request.issue_id)
                await ctx.conn.execute(ADD_STAR, request.issue_id, ctx.caller.user_id, ctx.now)
                return int(await ctx.conn.fetchval(STAR_COUNT, request.issue_id))
            await ctx.conn.execute(REMOVE_STAR, request.issue_id, ctx.caller.user_id)
            try:
                await _visible_issue(ctx, request.issue_id)
            except NotFound:
                return 0
            return int(await ctx.conn.fetchval(STAR_COUNT, request.issue_id))

        count, _ = await self._write(request.caller, work)
        return v1.StarIssueResponse(
            issue_id=request.issue_id, starred=request.starred, star_count=count
        )

    async def _subscriptions(self, conn: Conn, user_id: str) -> v1.Subscriptions:
        components = await conn.fetch(COMPONENT_SUBSCRIPTIONS_OF, user_id)
        searches = await conn.fetch(SAVED_SEARCH_SUBSCRIPTIONS_OF, user_id)
        return v1.Subscriptions(
            components=[
                v1.ComponentSubscription(
                    component_id=r["component_id"], include_subtree=r["include_subtree"]
                )
                for r in components
            ],
            saved_search_ids=[r["saved_search_id"] for r in searches],
        )

    async def set_component_subscription(
        self, request: v1.SetComponentSubscriptionRequest
    ) -> v1.Subscriptions:
        """Subscribe the caller to a component they may view, or unsubscribe from any.

        Unsubscribing needs no sight of the component (a subscription can
        outlive the access that allowed it); the answer lists only the
        caller's own subscriptions, so it reveals nothing of the component.
        """

        async def work(ctx: WriteContext) -> v1.Subscriptions:
            user = ctx.caller.user_id
            if request.subscribed:
                await visible_component(ctx, request.component_id, "component_id")
                await ctx.conn.execute(
                    SUBSCRIBE_COMPONENT, user, request.component_id, request.include_subtree,
                    ctx.now,
                )  # fmt: skip
            else:
                await ctx.conn.execute(UNSUBSCRIBE_COMPONENT, user, request.component_id)
            return await self._subscriptions(ctx.conn, user)

        subscriptions, _ = await self._write(request.caller, work)
        return subscriptions

    async def set_saved_search_subscription(
        self, request: v1.SetSavedSearchSubscriptionRequest
    ) -> v1.Subscriptions:
        """Subscribe the caller to a saved search they may read, or unsubscribe from any.

        As with components, unsubscribing needs no sight of the search (its
        owner may have stopped sharing it).
        """

        async def work(ctx: WriteContext) -> v1.Subscriptions:
            user = ctx.caller.user_id
            if not request.subscribed:
                await ctx.conn.execute(UNSUBSCRIBE_SAVED_SEARCH, user, request.saved_search_id)
                await ctx.conn.execute(cq.BUMP_SUBSCRIPTIONS_VERSION)
                return await self._subscriptions(ctx.conn, user)
            row = await ctx.conn.fetchrow(cq.SAVED_SEARCH_BY_ID, request.saved_search_id)
            if row is None or not saved_search_visible(ctx.caller, ctx.principals, row):
                raise NotFound(
                    f"saved_search_id: saved search {request.saved_search_id} not found",
                    metadata={"saved_search_id": str(request.saved_search_id)},
                )
            await ctx.conn.execute(SUBSCRIBE_SAVED_SEARCH, user, row["id"], ctx.now)
            await ctx.conn.execute(cq.BUMP_SUBSCRIPTIONS_VERSION)
            return await self._subscriptions(ctx.conn, user)

        subscriptions, _ = await self._write(request.caller, work)
        return subscriptions

    async def list_subscriptions(self, request: v1.ListSubscriptionsRequest) -> v1.Subscriptions:
        """The caller's subscriptions."""
        caller = request.caller or v1.Caller()
        async with translated_errors(), self._pool.acquire() as conn:
            return await self._subscriptions(conn, caller.user_id)

    async def _settings(self, conn: Conn, user_ids: list[str]) -> list[v1.NotificationSettings]:
        return await read_settings(conn, user_ids)

    async def get_notification_settings(
        self, request: v1.GetNotificationSettingsRequest
    ) -> v1.GetNotificationSettingsResponse:
        """The caller's settings, or (admin callers) anyone's."""
        caller = request.caller or v1.Caller()
        users = list(dict.fromkeys(request.user_ids)) or [caller.user_id]
        if not caller.admin and users != [caller.user_id]:
            msg = "user_ids: only an admin may read another person's notification settings"
            raise PermissionDenied(msg, metadata={"field": "user_ids"})
        async with translated_errors(), self._pool.acquire() as conn:
            return v1.GetNotificationSettingsResponse(settings=await self._settings(conn, users))

    async def update_notification_settings(
        self, request: v1.UpdateNotificationSettingsRequest
    ) -> v1.NotificationSettings:
        """Replace the caller's settings (mutes excepted) if ``expected_version`` is current.

        Raises:
            Conflict: ``expected_version`` (not 0) is not the current
                version (reason ``VERSION_CONFLICT``, metadata
                ``current_version``); nothing was written.
        """
        expected = request.expected_version

        async def work(ctx: WriteContext) -> v1.NotificationSettings:
            user = ctx.caller.user_id
            stored = settings_json(request.settings or v1.NotificationSettings())
            if await ctx.conn.fetchval(SAVE_SETTINGS, user, stored, ctx.now, expected) is None:
                current = await ctx.conn.fetchval(SETTINGS_VERSION, user) or 1
                raise settings_version_conflict(expected, int(current))
            return (await self._settings(ctx.conn, [user]))[0]

        settings, _ = await self._write(request.caller, work)
        return settings

    async def set_issue_mute(self, request: v1.SetIssueMuteRequest) -> v1.NotificationSettings:
        """Mute or unmute a visible issue for the caller."""

        async def work(ctx: WriteContext) -> v1.NotificationSettings:
            user = ctx.caller.user_id
            if request.muted:
                await _visible_issue(ctx, request.issue_id)
                await ctx.conn.execute(MUTE, user, request.issue_id, ctx.now)
            else:
                await ctx.conn.execute(UNMUTE, user, request.issue_id)
            return (await self._settings(ctx.conn, [user]))[0]

        settings, _ = await self._write(request.caller, work)
        return settings

    async def get_issue_audience(self, request: v1.GetIssueAudienceRequest) -> v1.IssueAudience:
        """Starrers, component subscribers and muters of an issue (admin callers)."""
        caller = request.caller or v1.Caller()
        _admin_only(caller, "GetIssueAudience")
        async with translated_errors(), self._pool.acquire() as conn:
            row = await conn.fetchrow(AUDIENCE, request.issue_id)
        if row is None:
            raise issue_not_found(request.issue_id)
        return audience_message(request.issue_id, row)

    async def list_saved_search_subscriptions(
        self, request: v1.ListSavedSearchSubscriptionsRequest
    ) -> v1.ListSavedSearchSubscriptionsResponse:
        """Every saved-search subscription with its search (admin callers), paged.

        The subscriptions' version is read before the page, so the page
        holds every change the version counts; a caller holding the list of
        the current version (``changed_after``) gets it alone, no rows.
        """
        caller = request.caller or v1.Caller()
        _admin_only(caller, "ListSavedSearchSubscriptions")
        page = KeysetPage.of(
            self._tokens, request.page, "saved-search-subscriptions", caller.user_id
        )
        after = (int(page.position[0]), str(page.position[1])) if page.position else (0, "")
        async with translated_errors(), self._pool.acquire() as conn:
            version = int(await conn.fetchval(cq.SUBSCRIPTIONS_VERSION))
            if request.changed_after == version:
                return v1.ListSavedSearchSubscriptionsResponse(version=version)
            fetched = await conn.fetch(LIST_SAVED_SEARCH_SUBSCRIPTIONS, *after, page.size + 1)
        rows, more = page.cut(fetched)
        token = page.next_token(rows, more, lambda r: [r["id"], r["user_id"]])
        return v1.ListSavedSearchSubscriptionsResponse(
            subscriptions=[
                v1.SavedSearchSubscription(
                    user_id=r["user_id"], saved_search=saved_search_from_row(r)
                )
                for r in rows
            ],
            next_page_token=token,
            version=version,
        )
