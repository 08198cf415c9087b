"""Saved-search subscriptions: which issues of a feed batch newly match, or stopped.

Once per batch of feed changes, not once per change: the subscriptions are
listed once, each subscriber's query is parsed and resolved once (cached
while the query text stays the same), and each subscription runs **one**
search over all the batch's issues (``<query> AND id:<ids…>``) *as the
subscriber* (with their identity assertion, so their groups count and the
issues they may not see never match). What each matched before is read in
one statement; what changed is returned per issue, and recorded in the
batch, so the consumer writes it with the deliveries.

A subscription the notifier sees for the first time is **seeded** before
any batch is judged against it: at the start of every round, before the
feed is read (so on an idle poll too, about every two seconds),
:meth:`SavedSearchMatcher.prepare` lists the subscriptions and runs each new
one's search over every issue, as its subscriber; what it finds is recorded
as matching without a mail (``saved_search_seen`` remembers it), committed
before the round reads the feed. A batch is judged only against seeded
subscriptions, so an issue that matched before someone subscribed is not
mailed as new, even when the batch that first sees the subscription changes
it (a bulk edit). What the seed cannot know is the state between subscribing
and the seed: a change committed in that moment (at most a round: about two
seconds while the notifier keeps up) is part of what the seed finds, so an
issue it made match is not mailed as a new match. The alternative, judging
that batch's issues against no earlier match, mailed every already-matching
issue it touched as new. A seed the Model refuses, that does not resolve,
or that cannot be answered now (the Model or the Authenticator away, the
search timing out over every issue), is tried again a minute later
(:data:`RESEED_SECONDS`), and its subscription judged once it is seeded;
a round seeds :data:`SEEDS_PER_ROUND` and more while its
:class:`SeedBudget` lasts (about a second), the rest in the rounds after: so
a queue database started empty with thousands of subscriptions is seeded in
a few rounds, and a seed holds up no one else's mail for long, since the
feed is read only after the seeds (one raised would fail every round before
the feed is read again).
A subscription no longer listed (unsubscribed,
deleted), or whose subscriber may no longer read it
(:mod:`bugless_notify._readable`), is forgotten, its matches with it, so
subscribing again seeds afresh. A subscription whose query is not the one
it was seeded with (``saved_search_seen.query``: its owner edited it) is
seeded again, the old query's matches forgotten in the same commit, and
judged once seeded, as a
new one is: its matches were the old query's, so the first change to each
issue the new query matched all along was mailed as a new match. One an
earlier notifier seeded (no query recorded) is taken as seeded with the
query it has now, which is recorded. An idle round costs one small call: a
round that leaves nothing to seed is reused while the Model's version of the
subscriptions stays the same (:meth:`SavedSearchMatcher.prepare`), at most
:data:`RELIST_SECONDS`.

A query the Model refuses as written (INVALID_ARGUMENT: a hotlist its owner
deleted or made private since, a component the subscriber may no longer
view, a custom field gone) tells nothing of which issues match: its
subscription's matches are left as they were, not taken for "matches
nothing", which would tell the subscriber that every issue it matched
stopped matching. The refusal is logged, and the web's saved-search list
(``/searches``) says beside each search its viewer is subscribed to that it
no longer runs, why, and that its mail has stopped. A query that no
longer resolves (a person it names was renamed since, so their old name
names nobody) is kept the same way, and so is any other failure of the
search but one: the Model or the Authenticator away, or a call timing
out (``Unavailable``), which is raised, so the consumer tries the batch
again once they answer; only a subscriber who gets no assertion
(disabled, deleted) matches nothing.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bugless_core.clients import call, every_page, resolve_query
from bugless_core.errors import (
    BuglessError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from bugless_core.migrations import quote_schema
from bugless_core.search import QuerySyntaxError, parse_query
from bugless_core.search.build import all_of, term
from bugless_notify._readable import readable
from bugless_notify._saved_search_store import MatchChanges
from bugless_proto import v1

#: Subscriptions searched at once.
SEARCHES_AT_ONCE = 16
#: New subscriptions a round always tries to seed before its feed read (when
#: that many are new): one wave of :data:`SEARCHES_AT_ONCE`. More are seeded
#: in the same round while its :class:`SeedBudget` lasts; the rest in the
#: rounds after, each judged once seeded.
SEEDS_PER_ROUND = SEARCHES_AT_ONCE
#: Resolved queries kept (by query text and subscriber).
_RESOLVED_CACHE = 10_000
#: How long a query's resolution is reused (:meth:`SavedSearchMatcher._filter`):
#: a new day, or a person it names renamed, counts within it. Not for the
#: process's life: ``modified>today-7`` of a notifier up for a month meant
#: five weeks.
RESOLVED_SECONDS = 60.0
#: How long after a seed the Model refused (or that did not resolve) it is
#: tried again: not at every round, which would log its warning every two
#: seconds while the notifier is idle.
RESEED_SECONDS = 60.0
#: How long a list of the subscriptions is used while the Model says they
#: have not changed (its version, :meth:`SavedSearchMatcher.prepare`):
#: after this it is read whole again anyway, so a change the version missed
#: (written by a Model replica of a release before it, during a rolling
#: upgrade) counts within a minute; so does a subscriber who left a group
#: that was a reader (:mod:`bugless_notify._readable`: no version moves).
RELIST_SECONDS = 60.0


@dataclass(frozen=True)
class SeedBudget:
    """How much seeding one round does beyond its first wave, before it reads the feed.

    Each seed searches every issue, so a burst of new subscriptions (a
    script subscribing a team; a notifier starting on an empty queue
    database, restored or new, with thousands) seeded all at once held up
    every mail until the last was done; one wave a round (~2 s) took
    minutes for thousands, and an unseeded subscription mails nothing
    meanwhile. A round goes on starting seeds, :data:`SEARCHES_AT_ONCE` in
    flight, until ``seconds`` have passed since its first or its seeds have
    found ``rows`` matches (committed in one transaction with the round's
    cursor check); the seeds begun run to their end. So a backlog is seeded
    at about ``seconds`` per round of work, and the batch after it is read
    at most that (and one seed) later.
    """

    #: Seconds after which a round starts no more seeds (its first wave aside).
    seconds: float = 1.0
    #: Matches after which a round starts no more seeds (its first wave aside).
    rows: int = 100_000


_log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """What :meth:`SavedSearchMatcher.prepare` found: the subscriptions to judge, the seeds."""

    #: Subscriptions seeded before (or by ``seeds``): batches are judged against these.
    subscriptions: list[v1.SavedSearchSubscription]
    #: Seeds of new subscriptions and forgotten ones, to commit before the feed is read.
    seeds: MatchChanges
    #: New subscriptions the round's :class:`SeedBudget` left to the rounds after.
    backlog: int = 0


@dataclass
class _Settled:
    """A round's subscriptions, reused while none changed (:meth:`SavedSearchMatcher.prepare`)."""

    #: The Model's version of the subscriptions they were listed at.
    version: int
    #: When they were listed (the matcher's clock).
    listed_at: float
    #: Every subscription listed was seeded or waits for its reseed: the ones seeded.
    ready: list[v1.SavedSearchSubscription]


class SavedSearchMatcher:
    """Finds the saved-search changes of a batch (see the module)."""

    def __init__(
        self,
        model: v1.ModelStub,
        acting_model: v1.ModelStub,
        auth: v1.AuthenticatorStub,
        notifier: v1.Caller,
        schema: str,
        *,
        clock: Callable[[], float] = time.time,
        seed_budget: SeedBudget = SeedBudget(),
    ) -> None:
        """Read subscriptions with ``model`` as ``notifier``; search with ``acting_model``.

        ``clock`` (POSIX seconds) says what day ``today`` is in the queries;
        ``seed_budget`` how much a round seeds beyond its first wave.
        """
        self._model = model
        self._acting = acting_model
        self._auth = auth
        self._notifier = notifier
        self._matched_sql = (
            f"SELECT saved_search_id, user_id, issue_id FROM "
            f"{quote_schema(schema)}.saved_search_matches WHERE issue_id = ANY ($1::bigint[])"
        )
        self._seen_sql = (
            f"SELECT saved_search_id, user_id, query FROM {quote_schema(schema)}.saved_search_seen"
        )
        self._resolved: dict[tuple[str, str], tuple[float, v1.SearchNode | None]] = {}
        #: By subscription, when a seed that could not be taken is tried again.
        self._reseed_at: dict[tuple[int, str], float] = {}
        #: The last round's subscriptions when nothing was left to seed (see :meth:`prepare`).
        self._settled: _Settled | None = None
        self._clock = clock
        self._seed_budget = seed_budget

    def forget_settled(self) -> None:
        """Read the subscriptions and what is seeded whole at the next round.

        For the consumer taking its lock (again): while another replica
        consumed, what is seeded may have changed under this one's memory.
        """
        self._settled = None

    async def _listed(self, unless: int) -> tuple[int, list[v1.SavedSearchSubscription]] | None:
        """The Model's version of the subscriptions and every one (pages of 500).

        None when the version is still ``unless`` (0: list whatever the
        version): the Model then sends no rows. A Model before the version
        answers 0 with the list, whatever ``unless`` is.
        """
        out: list[v1.SavedSearchSubscription] = []
        version: int | None = None
        async for page in every_page(
            self._model.list_saved_search_subscriptions,
            v1.ListSavedSearchSubscriptionsRequest(caller=self._notifier, changed_after=unless),
            page_size=500,
        ):
            if version is None:
                if unless and page.version == unless:
                    return None
                version = page.version
            out += [s for s in page.subscriptions if s.saved_search is not None]
        return version or 0, out

    async def _filter(self, query: str, user: str) -> v1.SearchNode | None:
        """The subscriber's query as a filter (None: it does not parse or resolve).

        A resolution is reused for :data:`RESOLVED_SECONDS`: it holds the
        day ``today`` was (``created>today-7`` is a date once resolved) and
        the ids of the people the query names then.
        """
        key = (query, user)
        now = self._clock()
        cached = self._resolved.get(key)
        if cached is not None and 0 <= now - cached[0] < RESOLVED_SECONDS:
            return cached[1]
        today = datetime.datetime.fromtimestamp(now, datetime.UTC).date()
        node: v1.SearchNode | None
        try:
            structured = await resolve_query(parse_query(query), self._auth, me=user, today=today)
            node = structured.filter or v1.SearchNode()
        except Unavailable:
            raise  # the Authenticator away: not an answer to keep (see _matching)
        except (QuerySyntaxError, BuglessError):
            node = None
        if len(self._resolved) >= _RESOLVED_CACHE:
            self._resolved.clear()
        self._resolved[key] = (now, node)
        return node

    async def _matching(
        self, subscription: v1.SavedSearchSubscription, issue_ids: Sequence[int]
    ) -> set[int] | None:
        """Which of ``issue_ids`` the subscription's search finds, as its subscriber.

        None when the Model refuses the query as written: which match is not
        known, and the matches stay as they were (see the module).
        """
        assert subscription.saved_search is not None
        user = subscription.user_id
        node = await self._filter(subscription.saved_search.query, user)
        if node is None:
            # It no longer parses or resolves (a person it names was renamed
            # since): which issues match is not known, as for a refusal.
            _log.warning(
                "saved search %s of %s no longer parses or resolves, its matches are kept",
                subscription.saved_search.id,
                user,
                extra={"saved_search_id": subscription.saved_search.id, "user_id": user},
            )
            return None
        only = all_of(node, term(v1.SearchField.ID, v1.SearchOperator.EQ, *issue_ids))

        async def search() -> set[int]:
            found = await call(
                self._acting.search_issues,
                v1.SearchIssuesRequest(
                    caller=v1.Caller(user_id=user),
                    query=v1.StructuredQuery(filter=only),
                    page=v1.PageRequest(page_size=len(issue_ids)),
                ),
            )
            return {i.id for i in found.issues}

        return await _answer(subscription, search, "its matches are kept")

    async def _seed(self, subscription: v1.SavedSearchSubscription) -> set[int] | None:
        """Every issue the subscription's search finds now, as its subscriber (pages of 500).

        None when which match is not known (see :meth:`_matching`): it is
        tried again :data:`RESEED_SECONDS` later.
        """
        assert subscription.saved_search is not None
        user = subscription.user_id
        node = await self._filter(subscription.saved_search.query, user)
        if node is None:
            return None

        async def search() -> set[int]:
            found: set[int] = set()
            async for page in every_page(
                self._acting.search_issues,
                v1.SearchIssuesRequest(
                    caller=v1.Caller(user_id=user), query=v1.StructuredQuery(filter=node)
                ),
                page_size=500,
            ):
                found.update(i.id for i in page.issues)
            return found

        return await _answer(subscription, search, "it is seeded a minute later")

    async def prepare(self, conn: Any) -> Prepared:
        """The subscriptions to judge a batch against, each new one seeded (see the module).

        ``conn`` reads which are seeded; the answer's ``seeds`` are to be
        committed before the feed is read, so that every change the feed
        then gives is judged against what matched before it. A seed that
        cannot be answered now (``Unavailable``: the Model or the
        Authenticator away, or its search over every issue timing out) is
        put off for :data:`RESEED_SECONDS` like a refused one, not raised:
        raised, it failed the round before the feed was read, at every
        round while it lasted, so one subscriber's slow search stopped the
        mail of everyone.

        An idle round is cheap: once a round leaves nothing to seed (each
        subscription seeded, or waiting for its reseed), the next ones ask
        the Model only whether the subscriptions changed since
        (``changed_after`` its version: one call, no rows) and reuse that
        round's, reading nothing from ``conn``. That is what a full round
        would find: the list is the Model's at that version, and what is
        seeded changes only by this consumer's own seeds, of which such a
        round has none. The list is read whole again when the version moved,
        when a reseed is due, after :data:`RELIST_SECONDS`, after
        :meth:`forget_settled`, and at every round from a Model before the
        version (it answers 0).

        Raises:
            Unavailable: the subscriptions could not be listed (tried again).
        """
        now = self._clock()
        settled = self._settled
        if settled is not None and (
            not 0 <= now - settled.listed_at < RELIST_SECONDS
            or any(t <= now for t in self._reseed_at.values())
        ):
            settled = None
        answer = await self._listed(settled.version if settled else 0)
        if answer is None:
            assert settled is not None
            return Prepared(subscriptions=list(settled.ready), seeds=MatchChanges())
        version, listed_now = answer
        self._settled = None
        subscriptions = await readable(self._acting, listed_now, at_once=SEARCHES_AT_ONCE)
        seeded_with = {
            (r["saved_search_id"], r["user_id"]): r["query"]
            for r in await conn.fetch(self._seen_sql)
        }
        listed = {(s.saved_search.id, s.user_id): s for s in subscriptions if s.saved_search}
        seeds = MatchChanges(forgotten=set(seeded_with) - set(listed))
        # Seeded with the query as it is now; one whose query was edited
        # since is seeded again (its matches were the old query's), and one
        # an earlier notifier seeded (no query recorded) is taken as is.
        seen: set[tuple[int, str]] = set()
        for key, subscription in listed.items():
            if key not in seeded_with:
                continue
            query = subscription.saved_search.query if subscription.saved_search else ""
            if seeded_with[key] is None:
                seeds.queries[key] = query
            elif seeded_with[key] != query:
                continue
            seen.add(key)
        edited = set(listed).intersection(seeded_with) - seen
        self._reseed_at = {k: t for k, t in self._reseed_at.items() if k in listed and t > now}
        new = [s for k, s in listed.items() if k not in seen and k not in self._reseed_at]
        limit = asyncio.Semaphore(SEARCHES_AT_ONCE)
        until = time.monotonic() + self._seed_budget.seconds
        begun = 0
        found_rows = 0

        async def one(subscription: v1.SavedSearchSubscription) -> set[int] | _NotBegun | None:
            nonlocal begun, found_rows
            async with limit:
                if begun >= SEEDS_PER_ROUND and (
                    time.monotonic() >= until or found_rows >= self._seed_budget.rows
                ):
                    return _NOT_BEGUN  # the budget is spent: a later round's
                begun += 1
                try:
                    found = await self._seed(subscription)
                    found_rows += len(found or ())
                    return found
                except Unavailable as exc:
                    assert subscription.saved_search is not None
                    _log.warning(
                        "saved search %s of %s could not be seeded now, tried again in %ds: %s",
                        subscription.saved_search.id,
                        subscription.user_id,
                        RESEED_SECONDS,
                        exc.message,
                        extra={
                            "saved_search_id": subscription.saved_search.id,
                            "user_id": subscription.user_id,
                        },
                    )
                    return None

        backlog = 0
        for subscription, found in zip(
            new, await asyncio.gather(*(one(s) for s in new)), strict=True
        ):
            assert subscription.saved_search is not None
            key = (subscription.saved_search.id, subscription.user_id)
            if isinstance(found, _NotBegun):
                backlog += 1
                continue
            if found is None:  # which match is not known: judged once seeded
                self._reseed_at[key] = now + RESEED_SECONDS
                continue
            seeds.seeded.add(key)
            seeds.queries[key] = subscription.saved_search.query
            if key in edited:
                seeds.forgotten.add(key)  # the old query's matches go first
            seeds.added |= {(*key, issue_id) for issue_id in found}
        ready = [s for k, s in listed.items() if k in seen or k in seeds.seeded]
        if (
            version
            and not seeds.seeds_anything()
            and all(k in seen or k in self._reseed_at for k in listed)
        ):
            self._settled = _Settled(version, now, ready)
        if backlog:
            _log.info(
                "saved searches: %d subscriptions seeded, %d left to the next rounds",
                len(seeds.seeded),
                backlog,
                extra={"seeded": len(seeds.seeded), "backlog": backlog},
            )
        return Prepared(subscriptions=ready, seeds=seeds, backlog=backlog)

    async def changes(
        self,
        conn: Any,
        issue_ids: Sequence[int],
        changes: MatchChanges,
        subscriptions: Sequence[v1.SavedSearchSubscription],
    ) -> dict[int, list[tuple[str, str]]]:
        """Per issue: ``(subscriber, saved search name)`` whose match changed.

        ``subscriptions`` are :meth:`prepare`'s, seeded before the batch was
        read. ``conn`` reads what matched before; ``changes`` receives the
        rows to write with the batch.
        """
        ids = sorted(set(issue_ids))
        if not ids or not subscriptions:
            return {}
        before = {
            (r["saved_search_id"], r["user_id"], r["issue_id"])
            for r in await conn.fetch(self._matched_sql, ids)
        }
        limit = asyncio.Semaphore(SEARCHES_AT_ONCE)

        async def one(subscription: v1.SavedSearchSubscription) -> set[int] | None:
            async with limit:
                return await self._matching(subscription, ids)

        found = await asyncio.gather(*(one(s) for s in subscriptions))
        out: dict[int, list[tuple[str, str]]] = {}
        for subscription, matching in zip(subscriptions, found, strict=True):
            assert subscription.saved_search is not None
            if matching is None:  # refused: which match is not known (see the module)
                continue
            search = subscription.saved_search
            for issue_id in ids:
                key = (search.id, subscription.user_id, issue_id)
                now = issue_id in matching
                if now == (key in before):
                    continue
                (changes.added if now else changes.removed).add(key)
                out.setdefault(issue_id, []).append((subscription.user_id, search.name))
        return out


class _NotBegun:
    """A seed a round's :class:`SeedBudget` left to a later round."""


_NOT_BEGUN = _NotBegun()


async def _answer(
    subscription: v1.SavedSearchSubscription,
    search: Callable[[], Awaitable[set[int]]],
    meanwhile: str,
) -> set[int] | None:
    """What ``search`` finds as the subscriber, or None when which issues match is not known.

    The one reading of a search's failure for both the batch check and the
    seeding: a refusal of the query as written (INVALID_ARGUMENT) or any
    other answer of the Model's is logged with ``meanwhile`` (what happens to
    the subscription's matches) and is None, so no one is told every issue
    stopped matching; a disabled or deleted subscriber (no assertion) matches
    nothing; the Model or the Authenticator away, or a call that timed out,
    is raised, so the consumer tries the batch again.
    """
    assert subscription.saved_search is not None
    try:
        return await search()
    except (PermissionDenied, NotFound):
        return set()
    except Unavailable:
        raise
    except BuglessError as exc:
        refused = "is refused by" if isinstance(exc, InvalidArgument) else "failed in"
        _log.warning(
            "saved search %s of %s %s the Model, %s: %s",
            subscription.saved_search.id,
            subscription.user_id,
            refused,
            meanwhile,
            exc.message,
            extra={
                "saved_search_id": subscription.saved_search.id,
                "user_id": subscription.user_id,
            },
        )
        return None
