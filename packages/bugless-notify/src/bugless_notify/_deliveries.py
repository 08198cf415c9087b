"""What one issue's feed entries turn into: mails and webhook deliveries.

Each recipient is checked **as that recipient**, with their own identity:
the notifier gets each recipient's signed identity assertion from the
Authenticator (``IssueAssertion``, cached) and hands them to the Model's
``GetNotificationViews``, which says which of them may see the issue (their
groups count; a group list the notifier names is never believed) and which
of its hotlists and components each may see. Someone who may not see the
issue is never told, and a notification shows only what its recipient may
see: a change they can see nothing of (an issue put on a private hotlist of
someone else) is no mail to them at all, rather than an empty "commented
on". A component webhook endpoint sees the issue as the admin who added it.

The feed consumer (:mod:`bugless_notify.consumer`) decides which entries to
work on and commits what this module adds to a :class:`Batch`; each
recipient's message is rendered by :mod:`bugless_notify._messages`.

Speed: per issue, one Model read for the issue and its entries (one per
1,000 of them), one for its recipients (one per 1,000 of them), one
Authenticator look-up of names (one per 1,000) and one per change with
``@mentions`` (per 1,000 names).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bugless_core import limits
from bugless_core.clients import ActingFor, call
from bugless_core.errors import MethodNotServed, NotFound, PermissionDenied, Unauthenticated
from bugless_core.issue_labels import holds_people
from bugless_notify._messages import delivery, nothing_seen, rendered
from bugless_notify._parts import in_parts
from bugless_notify._redactions import (
    Redaction,
    Waiting,
    WaitingDigest,
    kept_candidates,
    text_redactions,
)
from bugless_notify.component_webhooks import ComponentEndpoint, endpoints_for
from bugless_notify.queue import NewDelivery
from bugless_notify.recipients import Candidate, candidates, mentioned_usernames_of, wanted
from bugless_notify.render import Person, Reason
from bugless_proto import v1

_log = logging.getLogger("bugless.notify")

#: How the notifier calls the Model for what no single person may see (the
#: feed, who follows an issue, everyone's settings).
NOTIFIER = v1.Caller(user_id="bugless-notify", admin=True)


@dataclass
class Batch:
    """What one batch of feed changes queues, committed in one transaction."""

    deliveries: list[NewDelivery] = field(default_factory=list)
    #: Mails of people who chose a daily digest: (user id, the mail), kept for it.
    digest: list[tuple[str, NewDelivery]] = field(default_factory=list)
    #: Enabled component webhook endpoints (read once per batch).
    webhooks: list[ComponentEndpoint] = field(default_factory=list)
    #: Component id -> its parent's id (0: top level), looked up once per batch.
    parents: dict[int, int] = field(default_factory=dict)
    #: Redactions of text the batch read: messages still waiting about the
    #: changes they blanked are rendered again (:mod:`bugless_notify._redactions`).
    redactions: list[Redaction] = field(default_factory=list)
    #: Those messages' ids, the digest mails listing one of them, and each
    #: message's new rendering (absent: withdrawn).
    rewrites: list[tuple[list[str], list[WaitingDigest], dict[str, NewDelivery]]] = field(
        default_factory=list
    )


class IssueDeliveries:
    """Computes one issue's deliveries at a time (see the module); holds no state of its own."""

    def __init__(
        self,
        model: v1.ModelStub,
        auth: v1.AuthenticatorStub,
        acting_for: ActingFor,
        *,
        public_url: str,
        notify_authors: bool,
    ) -> None:
        """Ask ``model`` and ``auth``; ``acting_for`` hands out recipients' assertions.

        Args:
            model: The Model, called as :data:`NOTIFIER`.
            auth: The Authenticator (names, look-ups by username).
            acting_for: Recipients' identity assertions, cached.
            public_url: The web UI's base URL, for links in notifications.
            notify_authors: Tell people about their own changes.
        """
        self._model = model
        self._auth = auth
        self._acting_for = acting_for
        self._public_url = public_url
        self._notify_authors = notify_authors
        #: Whether the Authenticator's lack of unsubscribe tokens was logged.
        self._told_no_tokens = False

    async def add(
        self,
        issue_id: int,
        entries: list[tuple[int, str]],
        searches: list[tuple[str, str]],
        batch: Batch,
        *,
        kept: Mapping[int, Sequence[Candidate]] | None = None,
    ) -> None:
        """Add the mails and webhook deliveries of ``entries`` (version, feed author) of one issue.

        ``searches``: the issue's saved-search changes of the batch
        (:mod:`bugless_notify._saved_searches`), told with its first entry
        that still exists. ``kept``: by version, recipients to render for
        whom the rules no longer name (a redaction's rendering again,
        :mod:`bugless_notify._redactions`), each as any other candidate.
        """
        views = await self._entry_views(issue_id, [v for v, _ in entries])
        if views is None:
            return
        issue = views.issue
        audience = views.audience or v1.IssueAudience()
        if issue is None:
            return
        found = {e.version: e for e in views.entries}
        batch.redactions += text_redactions(found[v] for v, _ in entries if v in found)
        if batch.webhooks:
            await self._webhook_deliveries(issue, views, entries, batch)
        work: list[tuple[v1.HistoryEntry, str, list[Candidate]]] = []
        # Saved-search changes are the issue's state now, not one entry's:
        # they go with the first entry of the batch that still exists.
        pending = searches
        for version, author in entries:
            entry = found.get(version)
            if entry is None or entry.imported_from:
                # An imported entry is the other tracker's past (its author
                # and time are the source's), written by ``bugless import``
                # now: nobody is told of it, or a team moving in would get
                # a mail per entry of years of history. A saved-search
                # notice waits for the batch's next native entry.
                continue
            mentioned = await self._user_ids(mentioned_usernames_of(issue, entry))
            people = candidates(issue, entry, audience, mentioned, pending)
            named = {c.user_id for c in people}
            people += [c for c in (kept or {}).get(version, ()) if c.user_id not in named]
            people = [c for c in people if c.user_id not in audience.muted_by]
            pending = []
            if people:
                work.append((entry, entry.author or author, people))
        if not work:
            return
        checked = await self._check(
            issue_id, {c.user_id for _, _, ps in work for c in ps}, [e for e, _, _ in work]
        )
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
                notify_authors=self._notify_authors,
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
        mailed = [
            c
            for _, c in chosen
            if (u := users.get(c.user_id)) is not None and not u.disabled and u.email
        ]
        tokens = await self._unsubscribe_tokens(issue_id, [c.user_id for c in mailed])
        for entry, candidate in chosen:
            user = users.get(candidate.user_id)
            if user is None or user.disabled or not user.email:
                continue
            viewer = viewers[candidate.user_id]
            if candidate.reason != Reason.SAVED_SEARCH and nothing_seen(entry, issue, viewer):
                continue
            mail = delivery(
                candidate,
                public_url=self._public_url,
                user=user,
                issue=issue,
                entry=entry,
                viewer=viewer,
                people=names,
                paths=paths,
                hotlist_names=dict(checked.hotlist_names),
                unsubscribe_token=tokens.get(candidate.user_id, ""),
            )
            chosen_settings = by_user.get(candidate.user_id)
            if chosen_settings is not None and chosen_settings.digest == v1.DigestMode.DAILY:
                batch.digest.append((candidate.user_id, mail))
            else:
                batch.deliveries.append(mail)

    async def render_again(
        self,
        issue_id: int,
        waiting: Mapping[int, Sequence[Waiting]],
        *,
        webhooks: list[ComponentEndpoint],
        parents: dict[int, int],
    ) -> dict[str, NewDelivery]:
        """Messages still waiting about ``issue_id``, rendered from its entries as they are now.

        ``waiting``: by entry version, the messages rendered before a
        redaction blanked text they may quote (:mod:`bugless_notify._redactions`).
        The answer, by delivery id, holds each one its change still gives; one
        it lacks (a person only ``@mentioned`` in the removed text) is to be
        withdrawn. Webhook deliveries are rendered for the ``webhooks`` enabled now.

        The entries are read in parts of at most
        :data:`~bugless_core.limits.MAX_NOTIFICATION_VIEWS` (the Model's bound
        on one ``GetNotificationViews``): a held digest of a busy issue may
        wait on more, and a refusal would fail the consumer's batch at every
        try.
        """
        again = Batch(webhooks=webhooks, parents=parents)
        kept = kept_candidates(waiting)
        for part in in_parts(sorted(waiting), limits.MAX_NOTIFICATION_VIEWS):
            await self.add(issue_id, [(v, "") for v in part], [], again, kept=kept)
        rendered = {d.delivery_id: d for d in again.deliveries}
        rendered |= {d.delivery_id: d for _, d in again.digest}
        return rendered

    async def _entry_views(
        self, issue_id: int, versions: Sequence[int]
    ) -> v1.NotificationViews | None:
        """The issue, its audience and the entries ``versions`` (None: the issue is gone).

        Read in parts of at most :data:`~bugless_core.limits.MAX_NOTIFICATION_VIEWS`
        entries (the Model's bound on one ``GetNotificationViews``), the
        issue and audience the first's, paths and hotlist names joined as
        :func:`_merged` joins them: a feed batch may hold
        more entries of one issue than that, whatever ``--feed-batch`` is, as
        one change may carry thousands (an ``ImportIssue`` writes an issue's
        whole history, up to :data:`~bugless_core.limits.MAX_IMPORTED_ENTRIES`
        entries, in one transaction). One call refused for it failed the
        consumer's batch at every try, and every issue's mail behind it.
        """
        merged: v1.NotificationViews | None = None
        for part in in_parts(versions, limits.MAX_NOTIFICATION_VIEWS) or [[]]:
            try:
                views = await call(
                    self._model.get_notification_views,
                    v1.GetNotificationViewsRequest(
                        caller=NOTIFIER, issue_id=issue_id, versions=list(part)
                    ),
                )
            except NotFound:
                return None
            if merged is None:
                merged = views
            else:
                merged.entries += views.entries
                merged = _merged(merged, views)
        return merged

    async def _webhook_deliveries(
        self,
        issue: v1.Issue,
        views: v1.NotificationViews,
        entries: list[tuple[int, str]],
        batch: Batch,
    ) -> None:
        """Queue a delivery per entry for each endpoint of the issue's component (or above).

        Each endpoint sees the issue as the admin who added it: checked with
        their assertion like a mail recipient (see
        :mod:`bugless_notify.component_webhooks`). An imported entry goes to
        no endpoint, as it mails no one (see :meth:`add`): an endpoint
        announces what happens in bugless, and a team moving in would post
        one chat message per entry of years of history into its channel. A
        receiver that wants the history reads it from the API, where
        ``imported_from`` says what was imported.
        """
        found = {e.version: e for e in views.entries if not e.imported_from}
        news = [found[v] for v, _ in entries if v in found]
        if not news:
            return
        ancestors = await self._ancestors(issue.component_id, batch.parents)
        targets = endpoints_for(batch.webhooks, issue.component_id, ancestors)
        if not targets:
            return
        checked = await self._check(issue.id, {t.created_by for t in targets}, news)
        viewers = {v.user_id: v for v in checked.viewers}
        paths = dict(checked.component_paths or views.component_paths)
        named: set[str] = set()
        for entry in news:
            named |= _people_named(issue, entry)
        users = await self._users(sorted(named)) if named else {}
        people = {i: Person(u.display_name, u.username) for i, u in users.items()}
        for target in targets:
            viewer = viewers.get(target.created_by)
            if viewer is None:
                continue
            for entry in news:
                message = rendered(
                    Candidate(target.created_by, Reason.WEBHOOK),
                    public_url=self._public_url,
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

    async def _check(
        self, issue_id: int, user_ids: set[str], entries: Sequence[v1.HistoryEntry] = ()
    ) -> v1.NotificationViews:
        """Which of ``user_ids`` may see the issue, checked with their own identities.

        Each recipient's identity assertion (``IssueAssertion``, cached until
        shortly before it expires) goes to the Model, which takes their groups
        and permissions from it; a person with none (unknown, disabled) is not
        a recipient. Of ``entries``, those that move the issue are named to the
        Model, so that its answer holds the path of the component left (and
        which recipients may see it) as well as the issue's own: without them
        a move read "Component: component 3 → Platform>Networking".

        The Model checks at most :data:`~bugless_core.limits.MAX_NOTIFICATION_VIEWS`
        recipients a call: more (a large component's subscribers) are
        checked in calls of that many and the answers merged, rather than
        refused, which would fail the batch at every try and hold up every
        issue's mail after it. The common case is one call.

        The moves named go in one call, unsplit, relying on this: of
        ``entries``, only native ones reach here (both callers leave out
        ``imported_from`` ones, which mail no one); a native entry moves
        the issue only as the issue's own ChangeIssue or BatchChangeIssues
        entry, one per issue per feed change (BatchChangeIssues refuses an
        issue listed twice; the entries a relation or hotlist change causes
        on other issues change lists, never the component); and a batch
        holds at most ``--feed-batch`` changes, which the settings check
        bounds by :data:`~bugless_core.limits.MAX_NOTIFICATION_VIEWS` itself.
        So at most that many moves of one issue are named. Only an import
        writes more moves of one issue in one change (its whole history, up
        to :data:`~bugless_core.limits.MAX_IMPORTED_ENTRIES`), all
        ``imported_from``. A native write that moves one issue twice in one
        change, or a larger ``--feed-batch``, breaks it: split ``versions``
        with :func:`in_parts` then, merging each viewer's component paths.
        """
        ids = sorted(user_ids)
        assertions = await asyncio.gather(
            *(self._assertion(u) for u in ids), return_exceptions=False
        )
        known = [(u, a) for u, a in zip(ids, assertions, strict=True) if a is not None]
        versions = sorted({e.version for e in entries if any(_moves(c) for c in e.changes)})
        parts = in_parts(known, limits.MAX_NOTIFICATION_VIEWS) or [[]]
        merged = await self._views_renewing(issue_id, parts[0], versions)
        for part in parts[1:]:
            merged = _merged(merged, await self._views_renewing(issue_id, part, versions))
        return merged

    async def _views_renewing(
        self, issue_id: int, part: Sequence[tuple[str, str]], versions: Sequence[int]
    ) -> v1.NotificationViews:
        """:meth:`_views`, asking again for each recipient's assertion the Model refused.

        The notifier holds a recipient's assertion until shortly before it
        expires (``--assertion-ttl-seconds``, 5 minutes). An operator's
        ``bugless auth user sessions --end-all`` or ``disable`` ends its
        session too, and the Model then refuses the whole call, naming
        ``viewer_assertions[n]``; sent again as it was, that failed the
        batch at every try and held up every issue's mail after it until the
        held assertion ran out. The refused one is forgotten and asked for
        again (a disabled person gets none and is no recipient), at most once
        a recipient; another refusal is raised.
        """
        part = list(part)
        renewed: set[str] = set()
        while True:
            try:
                return await self._views(issue_id, part, versions)
            except Unauthenticated as exc:
                user_id = _refused_viewer(exc, part)
                if user_id is None or user_id in renewed:
                    raise
                reason = exc.reason
            renewed.add(user_id)
            self._acting_for.forget(user_id)
            again = await self._assertion(user_id)
            _log.info(
                "the Model refused the assertion held for %s (%s): %s",
                user_id,
                reason,
                "asked for a new one" if again is not None else "no longer a recipient",
                extra={"user_id": user_id, "reason": reason},
            )
            part = [(u, a) for u, a in part if u != user_id]
            if again is not None:
                part.append((user_id, again))

    async def _views(
        self, issue_id: int, part: Sequence[tuple[str, str]], versions: Sequence[int]
    ) -> v1.NotificationViews:
        """One GetNotificationViews of ``part`` (user id, assertion) of the recipients."""
        return await call(
            self._model.get_notification_views,
            v1.GetNotificationViewsRequest(
                caller=NOTIFIER,
                issue_id=issue_id,
                viewer_assertions=[a for _, a in part if a],
                viewers=[v1.Caller(user_id=u) for u, _ in part],
                versions=list(versions),
            ),
        )

    async def _assertion(self, user_id: str) -> str | None:
        """``user_id``'s assertion; ``""`` where the Authenticator signs none; None: no user."""
        try:
            return await self._acting_for.assertion(user_id)
        except (NotFound, PermissionDenied):
            return None

    # ---- look-ups ----

    async def _unsubscribe_tokens(self, issue_id: int, user_ids: Sequence[str]) -> dict[str, str]:
        """By person, the signed token of their one-click link muting ``issue_id``.

        One call per :data:`~bugless_core.limits.MAX_UNSUBSCRIBE_TARGETS`
        people (the Authenticator's bound): an issue with more mail
        recipients (a large component's subscribers) is asked in parts, not
        refused, which would fail the batch at every try.

        An Authenticator of a release before these links (upgraded after
        this notifier, out of docs/upgrades.md's order) does not serve them
        (:class:`~bugless_core.errors.MethodNotServed`): the mails go out
        with the settings page as their unsubscribe link, rather than wait
        for it, and that is logged once.
        """
        ids = sorted(set(user_ids))
        if not ids:
            return {}
        tokens: list[str] = []
        try:
            for part in in_parts(ids, limits.MAX_UNSUBSCRIBE_TARGETS):
                reply = await call(
                    self._auth.issue_unsubscribe_tokens,
                    v1.IssueUnsubscribeTokensRequest(
                        targets=[v1.UnsubscribeTarget(user_id=u, issue_id=issue_id) for u in part]
                    ),
                )
                tokens += reply.tokens
        except MethodNotServed:
            if not self._told_no_tokens:
                self._told_no_tokens = True
                _log.warning(
                    "the Authenticator does not serve IssueUnsubscribeTokens, so it is of a "
                    "release before this notifier's; mails name the settings page instead of "
                    "a one-click unsubscribe link until it is upgraded (docs/upgrades.md orders "
                    "the Authenticator first)"
                )
            return {}
        return dict(zip(ids, tokens, strict=True))

    async def _users(self, user_ids: Sequence[str]) -> dict[str, v1.User]:
        """``user_ids``' users, in calls of at most :data:`~bugless_core.limits.MAX_USER_LOOKUP`.

        That is the Authenticator's bound: an issue mailing more people is
        looked up in parts, not refused (which would fail its batch at every
        try).
        """
        ids = sorted({u for u in user_ids if u})
        users: dict[str, v1.User] = {}
        for part in in_parts(ids, limits.MAX_USER_LOOKUP):
            found = await call(self._auth.get_users, v1.GetUsersRequest(user_ids=list(part)))
            users |= {u.user_id: u for u in found.users}
        return users

    async def _user_ids(self, usernames: Sequence[str]) -> list[str]:
        """The ids of those of ``usernames`` who exist, in calls of at most MAX_USER_LOOKUP.

        A comment may ``@mention`` more people than one LookupUsers takes
        (a 65,536-character text holds thousands of names): it is looked up
        in parts, not refused, which would fail its batch at every try.
        """
        ids: list[str] = []
        for part in in_parts(list(usernames), limits.MAX_USER_LOOKUP):
            found = await call(self._auth.lookup_users, v1.LookupUsersRequest(usernames=list(part)))
            ids += [u.user_id for u in found.users]
        return ids


def _merged(first: v1.NotificationViews, more: v1.NotificationViews) -> v1.NotificationViews:
    """``first`` with the recipients ``more`` answers about (another part of them) added.

    The issue, entries and audience are ``first``'s; viewers and settings
    are each recipient's own, and the paths and hotlist names are unions
    (each part names those of its read, the same unless the issue changed
    between the calls, when a viewer's ids must still find their names).
    """
    first.viewers += more.viewers
    first.settings += more.settings
    first.component_paths = {**more.component_paths, **first.component_paths}
    first.hotlist_names = {**more.hotlist_names, **first.hotlist_names}
    return first


def _people_named(issue: v1.Issue, entry: v1.HistoryEntry) -> set[str]:
    """Every person the issue and the entry name (for their display names)."""
    refs = {issue.reporter, issue.assignee, issue.verifier, entry.author, *issue.cc}
    for change in entry.changes:
        if holds_people(change):
            refs |= {change.old_value, change.new_value, *change.added, *change.removed}
    return {r for r in refs if r}


def _moves(change: v1.FieldChange) -> bool:
    """Whether ``change`` moves the issue to another component."""
    return change.field == "component_id"


#: Where the Model says which viewer's assertion it refused (``field`` metadata).
_REFUSED_VIEWER = re.compile(r"viewer_assertions\[(\d+)\]")


def _refused_viewer(refused: Unauthenticated, part: Sequence[tuple[str, str]]) -> str | None:
    """The user id of the assertion of ``part`` the Model refused; None: not a viewer's."""
    found = _REFUSED_VIEWER.fullmatch(refused.metadata.get("field", ""))
    signed = [user_id for user_id, assertion in part if assertion]
    if found is None or int(found.group(1)) >= len(signed):
        return None
    return signed[int(found.group(1))]
