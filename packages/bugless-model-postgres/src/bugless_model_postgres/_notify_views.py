"""``GetNotificationViews``: the notifier's one read per changed issue.

Before, the notifier made about a dozen calls per change: the issue, pages of
its history until the entry, who follows it, everyone's settings, then per
recipient the issue and the history again *as that recipient* and each
component by id. Here the rows are read once, in one read-only snapshot (a
handful of statements whatever the number of recipients), and every
candidate recipient is evaluated against them in memory with the same rules
the per-caller reads apply:

* the issue: the role the component's effective ACL gives the recipient's
  principals (:func:`~bugless_model_postgres._convert.caller_role`, user *and*
  groups), as GetIssue does;
* the issue's hotlists: :func:`~bugless_model_postgres._context.hotlist_visible`
  per hotlist, as GetIssue's ``visible_hotlist_ids`` does;
* the components the entries name, and those the issue's component
  subscribers subscribed to (an ancestor, for a subtree subscription):
  their effective ACLs, as GetComponent does, and each one's path as the
  recipient sees it (:data:`~bugless_model_postgres._visibility.SEEN_PATH`,
  the rule of every path the Model gives: ``…>Net`` for ``Secret>Net`` to
  one who may view Net but not Secret), in one statement for them all.

Who the recipients are is not this module's concern: the servicer hands it
callers verified from identity assertions (never a group list a request
names, unless the Model runs without ``--auth``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from bugless_core.errors import PermissionDenied
from bugless_model_postgres._attachments import fill_entries
from bugless_model_postgres._calls_base import BackendCalls
from bugless_model_postgres._context import (
    fetch_issues,
    hotlist_visible,
    issue_not_found,
)
from bugless_model_postgres._convert import (
    Conn,
    Row,
    caller_role,
    entry_from_row,
    principals_of,
)
from bugless_model_postgres._database import translated_errors
from bugless_model_postgres._edit_calls import mark_edited
from bugless_model_postgres._follow import AUDIENCE, audience_message, read_settings
from bugless_model_postgres._visibility import SEEN_PATH
from bugless_proto import v1

#: Entries $2 (versions) of issue $1; for an edit, the text it replaced
#: (``replaced``: the latest text of the edited entry before it, blank once
#: redacted), NULL for other entries.
ENTRIES = """
SELECT h.*,
       CASE WHEN h.edits_version <> 0 THEN
           (SELECT e.comment FROM issue_history e
             WHERE e.issue_id = $1 AND e.version < h.version
               AND (e.version = h.edits_version OR e.edits_version = h.edits_version)
             ORDER BY e.version DESC LIMIT 1)
       END AS replaced
  FROM issue_history h
 WHERE h.issue_id = $1 AND h.version = ANY ($2::bigint[])
 ORDER BY h.version
"""
#: Every hotlist issue $1 is on, with what decides who may see it.
ISSUE_HOTLISTS = """
SELECT h.id, h.name, h.private, h.owner, h.editors
  FROM hotlist_items hi JOIN hotlists h ON h.id = hi.hotlist_id
 WHERE hi.issue_id = $1 ORDER BY h.id
"""
#: Components $1 with their paths and effective ACLs.
COMPONENTS = "SELECT id, path, effective_acl FROM components WHERE id = ANY ($1::bigint[])"
#: Each of components $1 (by ``id``) with its path as each recipient sees it
#: (``seen_path``, :data:`~bugless_model_postgres._visibility.SEEN_PATH`), a
#: recipient (``ord``) being every ``$2[i]`` whose principal is ``$3[i]``
#: (one element per principal: their counts differ), an admin when in $4.
VIEWER_PATHS = f"""
SELECT v.ord, c.id,
       {SEEN_PATH.format(c="c", admin="v.ord = ANY ($4::int[])", principals="v.principals")}
           AS seen_path
  FROM (SELECT p.ord, array_agg(p.principal) AS principals
          FROM unnest($2::int[], $3::text[]) AS p(ord, principal)
         GROUP BY p.ord) AS v
 CROSS JOIN components c
 WHERE c.id = ANY ($1::bigint[])
"""

_ADMIN = v1.Caller(user_id="bugless-notify", admin=True)


def _component_ids(
    issue: v1.Issue, entries: list[v1.HistoryEntry], subscribed: Iterable[int]
) -> list[int]:
    """The issue's component, those the entries name and those its subscribers subscribed to."""
    ids = {issue.component_id, *subscribed}
    for entry in entries:
        for change in entry.changes:
            if change.field == "component_id":
                ids |= {int(v) for v in (change.old_value, change.new_value) if v.isdigit()}
    return sorted(i for i in ids if i)


async def notification_views(
    conn: Conn, request: v1.GetNotificationViewsRequest
) -> v1.NotificationViews:
    """Answer ``request`` on ``conn`` (inside a read-only snapshot; see the module).

    Raises:
        PermissionDenied: the caller is not an admin (the notifier).
        NotFound: no such issue.
    """
    caller = request.caller or v1.Caller()
    if not caller.admin:
        msg = "GetNotificationViews answers the notifier only (an admin caller)"
        raise PermissionDenied(msg)
    issue = (await fetch_issues(conn, _ADMIN, [request.issue_id])).get(request.issue_id)
    if issue is None:
        raise issue_not_found(request.issue_id)
    entries: list[v1.HistoryEntry] = []
    if request.versions:
        rows = await conn.fetch(ENTRIES, request.issue_id, sorted(set(request.versions)))
        entries = [entry_from_row(r) for r in rows]
        for row, entry in zip(rows, entries, strict=True):
            # The notifier tells an edit only to those it newly mentions.
            if row["edits_version"]:
                entry.replaced_comment = row["replaced"] or ""
        await mark_edited(conn, request.issue_id, entries)
        await fill_entries(conn, request.issue_id, entries)
    audience_row = await conn.fetchrow(AUDIENCE, request.issue_id)
    audience = audience_message(request.issue_id, audience_row)
    named = _component_ids(issue, entries, audience.subscribed_components.values())
    components = {r["id"]: r for r in await conn.fetch(COMPONENTS, named)}
    views = v1.NotificationViews(
        issue=issue,
        entries=entries,
        audience=audience,
        component_paths={i: r["path"] for i, r in components.items()},
    )
    viewers = [v for v in request.viewers if v.user_id]
    if not viewers:
        return views
    issue_acl = components[issue.component_id]["effective_acl"]
    hotlists = await conn.fetch(ISSUE_HOTLISTS, request.issue_id)
    views.hotlist_names = {h["id"]: h["name"] for h in hotlists}
    starred = set(audience.starred_by)
    readers = [v for v in viewers if caller_role(v, issue_acl) is not None]
    paths = await _seen_paths(conn, readers, components)
    for at, viewer in enumerate(readers):
        seen = {
            i: paths[at, i]
            for i, r in components.items()
            if caller_role(viewer, r["effective_acl"]) is not None
        }
        views.viewers.append(
            v1.NotificationViewer(
                user_id=viewer.user_id,
                hotlist_ids=[h["id"] for h in hotlists if hotlist_visible(viewer, h)],
                component_ids=list(seen),
                starred=viewer.user_id in starred,
                component_paths=seen,
            )
        )
    user_ids = list(dict.fromkeys(v.user_id for v in viewers))
    views.settings = await read_settings(conn, user_ids)
    return views


async def _seen_paths(
    conn: Conn, readers: list[v1.Caller], components: Mapping[int, Row]
) -> dict[tuple[int, int], str]:
    """By (index in ``readers``, component id), the path as that reader sees it.

    A mail names components by path ("Component: Secret>Net", "this issue
    is in Secret>Net"): given whole, it told a recipient who may view Net
    (its own entries open it) but not Secret the name of what no listing
    of theirs shows. One statement for every reader, and none when every
    component is at the top (its path is its name, seen whole by any
    reader who may view it).
    """
    if not readers:
        return {}
    if all(">" not in r["path"] for r in components.values()):
        return {(at, i): r["path"] for at in range(len(readers)) for i, r in components.items()}
    ords: list[int] = []
    principals: list[str] = []
    for at, reader in enumerate(readers):
        own = principals_of(reader)
        ords += [at] * len(own)
        principals += own
    admins = [at for at, reader in enumerate(readers) if reader.admin]
    rows = await conn.fetch(VIEWER_PATHS, list(components), ords, principals, admins)
    return {(r["ord"], r["id"]): r["seen_path"] for r in rows}


class NotificationViewCalls(BackendCalls):
    """The backend call (a mixin of :class:`~bugless_model_postgres.PostgresBackend`)."""

    async def get_notification_views(
        self, request: v1.GetNotificationViewsRequest
    ) -> v1.NotificationViews:
        """See :func:`notification_views`; one read-only snapshot."""
        async with (
            translated_errors(),
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            return await notification_views(conn, request)
