"""The Model and Authenticator as the web tier sees them: stubs plus short caches.

The web tier stores nothing about people or issues. It keeps only answers
whose staleness is harmless and bounded: a validated token for a few seconds
(so a page is not two round trips to the Authenticator), the list of sign-in
methods, the Model's capabilities, and each caller's view of the component
tree for ``component_cache_seconds`` (component paths and templates rarely
change; a page may show a stale name or picker for that long, see
:meth:`Backends.components`), and each viewer's own hotlists (the
menus of search and issue pages) for ``hotlist_cache_seconds``, the custom
fields that apply to each component (the issue page's form, the bulk-edit
menu) for ``component_cache_seconds``, and the
people shown on pages until they change (:mod:`bugless_core.user_cache`
follows the users' change feed every ``user_changes_seconds``: a rename shows
about that late; ``user_cache_seconds`` while the feed cannot be read). Each of these
caches of this module fills a missing or expired entry with one call however
many requests miss it at once (:mod:`bugless_web.single_flight`).

Every unary call through :attr:`Backends.model` and :attr:`Backends.auth` is
retried once when a replica going away made it fail and retrying is safe
(:mod:`bugless_web.retries`), so a rolling restart of either service does not
show people the 503 page. Each has ``call_timeout_seconds``; an upload
(:meth:`Backends.upload_attachment`) and a download
(:meth:`Backends.download_attachment`) are bounded by how they move instead
(:mod:`bugless_web.transfers`).
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Collection, Hashable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar, cast

from grpclib.client import Channel

from bugless_core.clients import call, warn_if_insecure
from bugless_core.errors import NotFound, Unauthenticated
from bugless_core.limits import MAX_COMPONENT_PAGE_SIZE
from bugless_core.outage import OutageLog
from bugless_core.user_cache import (
    FetchChanges,
    UserCache,
    get_user_changes,
    get_users,
    lookup_users,
)
from bugless_core.usernames import username_key
from bugless_proto import v1
from bugless_web.metrics import WebMetrics
from bugless_web.retries import (
    MODEL_WATCH_ROUTE,
    RetryingAuthenticatorStub,
    RetryingCalls,
    RetryingModelStub,
    RetryingNotifierStub,
    counted_call,
)
from bugless_web.settings import WebSettings
from bugless_web.single_flight import SingleFlight
from bugless_web.transfers import download_from_model, upload_to_model

#: Most validated tokens remembered at once (oldest forgotten first).
TOKEN_CACHE_SIZE = 10_000
#: How long the Model's capabilities and the sign-in methods are reused.
INFO_TTL_SECONDS = 60.0
#: A cached identity is asked for again this long before its assertion expires.
ASSERTION_MARGIN = 30.0
#: Most callers whose component tree is remembered at once (oldest forgotten first).
COMPONENT_CACHE_SIZE = 1_000

#: Most (caller principals, component) pairs whose custom fields are remembered at once.
FIELD_CACHE_SIZE = 4_000

#: Most viewers whose own hotlists are remembered at once (oldest forgotten first).
HOTLIST_CACHE_SIZE = 1_000

#: Most custom field values remembered as nobody's username (oldest forgotten first).
NOT_USERS_CACHE_SIZE = 4_000
#: The most hotlists the bulk-edit and "add to hotlist" menus offer.
MENU_HOTLISTS = 200

#: Most values kept with one cached component tree (:meth:`Backends.from_components`).
TREE_DERIVED_SIZE = 256

T = TypeVar("T")

#: What the Model's component ACLs depend on: user id, sorted groups, admin.
_PrincipalsKey = tuple[str, tuple[str, ...], bool]
#: A cached field list: whose view, of which component.
_FieldsKey = tuple[_PrincipalsKey, int]


@dataclass(frozen=True)
class _ComponentTree:
    expires: float
    components: tuple[v1.Component, ...]
    paths: dict[int, str]
    #: Values made from this tree (:meth:`Backends.from_components`), gone with it.
    derived: dict[Hashable, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Viewer:
    """The signed-in person behind a request.

    Attributes:
        identity: What the Authenticator said about the token.
        caller: The Model's ``Caller`` built from it (admin from permissions).
        token: The session token (for Authorize calls made on their behalf).
    """

    identity: v1.Identity
    caller: v1.Caller
    token: str

    @property
    def user(self) -> v1.User:
        """The person (never None for a validated identity)."""
        return self.identity.user or v1.User()

    @property
    def is_admin(self) -> bool:
        """Whether the Authenticator granted the global ``admin`` permission."""
        return self.caller.admin


def caller_of(identity: v1.Identity) -> v1.Caller:
    """The Model's caller for an identity: id, groups, admin permission."""
    user = identity.user or v1.User()
    return v1.Caller(
        user_id=user.user_id,
        groups=list(identity.groups),
        admin="admin" in identity.permissions,
    )


#: The users' change feed's route, as the metrics name calls.
USER_CHANGES_ROUTE = "/bugless.v1.Authenticator/GetUserChanges"


def _counted_changes(changes: FetchChanges, metrics: WebMetrics) -> FetchChanges:
    """``changes`` with each call counted and timed in ``metrics`` like the other calls."""

    async def counted(after_version: int) -> v1.UserChanges:
        with counted_call(metrics, USER_CHANGES_ROUTE):
            return await changes(after_version)

    return counted


class Backends:
    """Clients of the Model and the Authenticator shared by every request."""

    def __init__(
        self,
        settings: WebSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        metrics: WebMetrics | None = None,
    ) -> None:
        """Open channels to the services ``settings`` name; ``clock`` times the caches.

        ``metrics`` counts every unary call, upload and download (``--metrics-port``),
        the users' change feed's included.
        """
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        warn_if_insecure("web", model=settings.model, auth=settings.auth)
        self._model_channel: Channel = settings.model.channel()
        self._auth_channel: Channel = settings.auth.channel()
        timeout = settings.call_timeout_seconds
        model_stub = RetryingModelStub(self._model_channel, timeout=timeout)
        self.model: v1.ModelStub = model_stub
        #: The Model's one outage log: its unary calls feed it, and so do the
        #: streams below (live pages' Watch, uploads, downloads).
        self.model_outage: OutageLog = model_stub.outage_log(MODEL_WATCH_ROUTE)
        self.auth: v1.AuthenticatorStub = RetryingAuthenticatorStub(
            self._auth_channel, timeout=timeout
        )
        #: The notifier's status service (admin page of failed deliveries), if configured.
        self._notify_channel: Channel | None = (
            settings.notify.channel() if settings.notify is not None else None
        )
        self.notifier: v1.NotifierStub | None = (
            RetryingNotifierStub(self._notify_channel, timeout=timeout)
            if self._notify_channel is not None
            else None
        )
        for stub in (self.model, self.auth, self.notifier):
            if isinstance(stub, RetryingCalls):
                stub.metrics = metrics
        #: For the Watch stream, which lives as long as a page is open.
        self.model_stream = v1.ModelStub(self._model_channel)
        #: For uploads (:meth:`upload_attachment`): their deadline is the whole
        #: allowance, as the Model should know it; this replica watches progress.
        self.model_uploads = v1.ModelStub(
            self._model_channel,
            timeout=settings.upload_timeout_seconds + settings.call_timeout_seconds,
        )
        #: For downloads (:meth:`download_attachment`), likewise.
        self.model_downloads = v1.ModelStub(
            self._model_channel,
            timeout=settings.download_timeout_seconds + settings.call_timeout_seconds,
        )
        # The users' change feed is read on a stub of its own, not retried:
        # its follower reads it again every poll anyway, and says once per
        # outage that it cannot (a retry logs a line per call). Its calls are
        # counted as every other call, and each read sets the feed's gauge.
        changes = get_user_changes(v1.AuthenticatorStub(self._auth_channel, timeout=timeout))
        self._users = UserCache(
            ttl_seconds=settings.user_cache_seconds,
            clock=clock,
            changes=changes if metrics is None else _counted_changes(changes, metrics),
            poll_seconds=settings.user_changes_seconds,
            on_read=None if metrics is None else metrics.feed_read,
        )
        self._tokens: OrderedDict[str, tuple[float, Viewer]] = OrderedDict()
        self._capabilities: tuple[float, frozenset[str]] | None = None
        self._authenticators: tuple[float, list[v1.AuthenticatorInfo]] | None = None
        self._trees: OrderedDict[_PrincipalsKey, _ComponentTree] = OrderedDict()
        self._hotlists: OrderedDict[_PrincipalsKey, tuple[float, tuple[v1.Hotlist, ...]]] = (
            OrderedDict()
        )
        self._fields: OrderedDict[_FieldsKey, tuple[float, tuple[v1.CustomField, ...]]] = (
            OrderedDict()
        )
        self._not_users: OrderedDict[str, float] = OrderedDict()
        self._token_loads: SingleFlight[str, Viewer] = SingleFlight()
        self._capability_loads: SingleFlight[None, frozenset[str]] = SingleFlight()
        self._authenticator_loads: SingleFlight[None, list[v1.AuthenticatorInfo]] = SingleFlight()
        self._tree_loads: SingleFlight[_PrincipalsKey, _ComponentTree] = SingleFlight()
        self._hotlist_loads: SingleFlight[_PrincipalsKey, tuple[v1.Hotlist, ...]] = SingleFlight()
        self._field_loads: SingleFlight[_FieldsKey, tuple[v1.CustomField, ...]] = SingleFlight()

    async def upload_attachment(
        self, messages: AsyncIterator[v1.UploadAttachmentRequest]
    ) -> v1.UploadAttachmentResponse:
        """Upload ``messages`` (the header, then the content) to the Model, counted.

        Bounded by ``upload_idle_seconds`` and ``upload_timeout_seconds``, not
        by ``call_timeout_seconds`` (:func:`bugless_web.transfers.upload_to_model`,
        which lists what it raises); sent once more if a draining Model
        refused it.
        """
        return await upload_to_model(
            self.model_uploads, messages, self._settings, self._metrics, outage=self.model_outage
        )

    async def download_attachment(
        self, request: v1.DownloadAttachmentRequest
    ) -> tuple[v1.Attachment, AsyncIterator[bytes]]:
        """The attachment and its content, streamed from the Model.

        Bounded by ``download_idle_seconds`` and ``download_timeout_seconds``
        once started, not by ``call_timeout_seconds``
        (:func:`bugless_web.transfers.download_from_model`, which lists what
        it raises): a browser reading a large file slowly gets all of it.
        Counted in the metrics until the body ends.
        """
        return await download_from_model(
            self.model_downloads, request, self._settings, self._metrics, outage=self.model_outage
        )

    def close(self) -> None:
        """Stop following the users' change feed, close the channels (on application shutdown)."""
        self._users.close()
        self._model_channel.close()
        self._auth_channel.close()
        if self._notify_channel is not None:
            self._notify_channel.close()

    async def viewer(self, token: str) -> Viewer:
        """Who ``token`` belongs to, asking the Authenticator at most every few seconds.

        Raises:
            Unauthenticated: The token is invalid or expired.
            Unavailable: The Authenticator cannot be reached.
        """
        key = hashlib.sha256(token.encode()).hexdigest()
        cached = self._tokens.get(key)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        return await self._token_loads.load(key, functools.partial(self._validate, key, token))

    async def _validate(self, key: str, token: str) -> Viewer:
        generation = self._token_loads.generation
        try:
            identity = await call(self.auth.validate_token, v1.ValidateTokenRequest(token=token))
        except Unauthenticated:
            self._tokens.pop(key, None)
            raise
        viewer = Viewer(identity=identity, caller=caller_of(identity), token=token)
        keep = self._settings.token_cache_seconds
        if identity.assertion_expires_at is not None:
            # Never hand out an assertion about to expire: ask again well before.
            left = identity.assertion_expires_at.timestamp() - time.time() - ASSERTION_MARGIN
            keep = max(0.0, min(keep, left))
        if generation == self._token_loads.generation:  # not signed out meanwhile
            self._tokens[key] = (self._clock() + keep, viewer)
            self._tokens.move_to_end(key)
            while len(self._tokens) > TOKEN_CACHE_SIZE:
                self._tokens.popitem(last=False)
        return viewer

    def forget_token(self, token: str) -> None:
        """Drop a token from the cache (on sign-out), and any validation of it under way."""
        key = hashlib.sha256(token.encode()).hexdigest()
        self._tokens.pop(key, None)
        self._token_loads.forget(key)

    async def users(self, user_ids: Iterable[str]) -> dict[str, v1.User]:
        """The people behind opaque ids (empty ids ignored, unknown ones absent).

        Those not cached (or changed since) cost one ``GetUsers``
        batch call. The users are shared between requests: do not modify them.
        """
        return await self._users.by_id(user_ids, get_users(self.auth))

    async def users_by_name(self, usernames: Iterable[str]) -> dict[str, v1.User]:
        """People by username, keyed by the username the Authenticator knows them by.

        Those not cached (or changed since) cost one ``LookupUsers``
        batch call. The users are shared between requests: do not modify them.
        """
        return await self._users.by_name(usernames, lookup_users(self.auth))

    async def query_users(
        self, usernames: Iterable[str], *, required: Collection[str]
    ) -> dict[str, v1.User]:
        """:meth:`users_by_name` for a search query's names; ``required`` are its people terms.

        The other names are values of custom field terms (``"Found In":4.2``),
        looked up because the field might hold people: the Model uses them
        only if it does. Those nobody goes by are remembered as such for
        ``user_cache_seconds`` (not asked again on every page of a list, one
        ``LookupUsers`` each); names of people terms are asked for every
        time they are not known, as :meth:`users_by_name` does, so a person
        who has just signed in can be named at once.
        """
        now = self._clock()
        wanted = {username_key(n) for n in usernames if n}
        optional = wanted - {username_key(n) for n in required}
        nobody = {n for n in optional if self._not_users.get(n, 0.0) > now}
        found = await self.users_by_name(wanted - nobody)
        keep = self._settings.user_cache_seconds
        if keep > 0:
            for name in optional - nobody - {username_key(name) for name in found}:
                self._not_users[name] = now + keep
                self._not_users.move_to_end(name)
            while len(self._not_users) > NOT_USERS_CACHE_SIZE:
                self._not_users.popitem(last=False)
        return found

    async def capabilities(self) -> frozenset[str]:
        """What the Model's backend declares (``watch``, ...), reused for a minute."""
        if self._capabilities is not None and self._capabilities[0] > self._clock():
            return self._capabilities[1]
        return await self._capability_loads.load(None, self._load_capabilities)

    async def _load_capabilities(self) -> frozenset[str]:
        info = await call(self.model.get_server_info, v1.GetServerInfoRequest())
        caps = frozenset(info.capabilities)
        self._capabilities = (self._clock() + INFO_TTL_SECONDS, caps)
        return caps

    async def authenticators(self) -> list[v1.AuthenticatorInfo]:
        """The sign-in methods the Authenticator offers, reused for a minute."""
        if self._authenticators is not None and self._authenticators[0] > self._clock():
            return self._authenticators[1]
        return await self._authenticator_loads.load(None, self._load_authenticators)

    async def _load_authenticators(self) -> list[v1.AuthenticatorInfo]:
        response = await call(self.auth.list_authenticators, v1.ListAuthenticatorsRequest())
        found = list(response.authenticators)
        self._authenticators = (self._clock() + INFO_TTL_SECONDS, found)
        return found

    async def components(self, viewer: Viewer) -> list[v1.Component]:
        """The whole component tree ``viewer`` may see, in path order, archived ones included.

        Archived components are listed (the tree page shows them, so their
        admins can find and unarchive them, and their paths need no extra
        call); pickers of components to put issues in leave them out.

        One paged ``ListComponents`` per caller principals (user id, groups,
        admin: what the Model's ACL filtering depends on), then reused for
        ``component_cache_seconds``; at most :data:`COMPONENT_CACHE_SIZE`
        principal sets are kept, least recently used forgotten first.

        Staleness is accepted: for up to ``component_cache_seconds`` a page may
        show a component's old path, template or archived state, and an ACL
        change may take that long to add or remove a component from someone's
        picker (the Model still checks every write against the ACL as it is
        now). Component changes made through this replica drop the cache at
        once (:meth:`forget_components`); other replicas catch up within the TTL.

        The returned list is the caller's own, but the messages in it are
        shared between requests: do not modify them.
        """
        return list((await self._component_tree(viewer)).components)

    async def from_components(
        self,
        viewer: Viewer,
        key: Hashable,
        make: Callable[[tuple[v1.Component, ...]], T],
    ) -> T:
        """``make(tree)`` of the tree :meth:`components` gives, made once per cached tree.

        For what a page derives from the whole tree on every view, such as the
        issue page's component picker (hundreds of options, ~4 % of the page's
        CPU when written per view): the value is kept with the cached tree, so
        it is never staler than the tree and is made again when the tree is
        fetched again. ``key`` names it among the values of one tree (at most
        :data:`TREE_DERIVED_SIZE`); do not modify what is returned.
        """
        tree = await self._component_tree(viewer)
        if key in tree.derived:
            return cast("T", tree.derived[key])
        value = make(tree.components)
        if len(tree.derived) >= TREE_DERIVED_SIZE:
            tree.derived.clear()
        tree.derived[key] = value
        return value

    async def component_paths(self, viewer: Viewer, component_ids: Iterable[int]) -> dict[int, str]:
        """``Platform>Storage`` for each component id (0 ignored), from :meth:`components`.

        An id missing from the cached tree (created since, or not visible to
        ``viewer``) costs one ``GetComponent``; one the Model does not show the
        viewer reads ``component N``.
        """
        wanted = sorted({c for c in component_ids if c})
        if not wanted:
            return {}
        known = (await self._component_tree(viewer)).paths
        found = {c: known[c] for c in wanted if c in known}
        for component_id in wanted:
            if component_id not in found:
                found[component_id] = await self._component_path(viewer, component_id)
        return found

    async def my_hotlists(self, viewer: Viewer) -> list[v1.Hotlist]:
        """The hotlists ``viewer`` is a member of (the menus of list and issue pages).

        Every search and issue page offers them, so they are kept per viewer
        (user id, groups, admin) for ``hotlist_cache_seconds``, at most
        :data:`HOTLIST_CACHE_SIZE` viewers, least recently used forgotten
        first. The viewer's own hotlist writes through this replica drop their
        entry at once (:meth:`forget_hotlists`), so someone who just created or
        renamed a hotlist sees it in the next page's menu; a hotlist someone
        else shares with them appears within the TTL. The messages are shared
        between requests: do not modify them.
        """
        key = _principals(viewer)
        cached = self._hotlists.get(key)
        if cached is not None and cached[0] > self._clock():
            self._hotlists.move_to_end(key)
            return list(cached[1])
        loaded = self._hotlist_loads.load(key, functools.partial(self._load_hotlists, viewer, key))
        return list(await loaded)

    async def _load_hotlists(self, viewer: Viewer, key: _PrincipalsKey) -> tuple[v1.Hotlist, ...]:
        generation = self._hotlist_loads.generation
        response = await call(
            self.model.list_hotlists,
            v1.ListHotlistsRequest(
                caller=viewer.caller,
                member=viewer.caller.user_id,
                page=v1.PageRequest(page_size=MENU_HOTLISTS),
            ),
        )
        found = tuple(response.hotlists)
        keep = self._settings.hotlist_cache_seconds
        if keep > 0 and generation == self._hotlist_loads.generation:
            self._hotlists[key] = (self._clock() + keep, found)
            self._hotlists.move_to_end(key)
            while len(self._hotlists) > HOTLIST_CACHE_SIZE:
                self._hotlists.popitem(last=False)
        return found

    def forget_hotlists(self, viewer: Viewer) -> None:
        """Drop ``viewer``'s cached hotlists (after they created, edited or deleted one).

        A look-up already under way is not reused afterwards, and its answer,
        which may predate the change, is not kept.
        """
        key = _principals(viewer)
        self._hotlists.pop(key, None)
        self._hotlist_loads.forget(key)

    def forget_components(self) -> None:
        """Drop every cached component tree and field list (after a component changed here)."""
        self._trees.clear()
        self._tree_loads.forget()
        self.forget_custom_fields()

    async def custom_fields(self, viewer: Viewer, component_id: int) -> list[v1.CustomField]:
        """The custom fields that apply to ``component_id``'s issues (root's first; none for 0).

        Pages that only show fields (the issue page's form, the search page's
        bulk-edit menu, which asks for every component on the page) read them
        from a cache per (caller principals, component) kept for
        ``component_cache_seconds``, as the component tree is: a field defined
        or changed on another replica shows that late; one changed through
        this replica shows at once (:meth:`forget_custom_fields`). Writes and
        the fields' own admin page ask the Model every time
        (:func:`bugless_web.custom_fields.applicable_fields`), and the Model
        checks every value against the fields as they are now. The messages
        are shared between requests: do not modify them.
        """
        if not component_id:
            return []
        key = (_principals(viewer), component_id)
        cached = self._cached_fields(key)
        if cached is not None:
            return list(cached)
        # A list page asks for up to 20 components at once: one call per key.
        load = functools.partial(self._load_custom_fields, viewer, component_id, key)
        return list(await self._field_loads.load(key, load))

    def cached_custom_fields(
        self, viewer: Viewer, component_id: int
    ) -> tuple[v1.CustomField, ...] | None:
        """:meth:`custom_fields` when the cache holds them fresh, without awaiting; else None.

        A list page asks for up to 20 components, nearly always cached: one
        task each (what ``asyncio.gather`` makes of coroutines) cost more
        than the look-ups.
        """
        if not component_id:
            return ()
        return self._cached_fields((_principals(viewer), component_id))

    def _cached_fields(self, key: _FieldsKey) -> tuple[v1.CustomField, ...] | None:
        cached = self._fields.get(key)
        if cached is None or cached[0] <= self._clock():
            return None
        self._fields.move_to_end(key)
        return cached[1]

    async def _load_custom_fields(
        self, viewer: Viewer, component_id: int, key: _FieldsKey
    ) -> tuple[v1.CustomField, ...]:
        generation = self._field_loads.generation
        response = await call(
            self.model.list_custom_fields,
            v1.ListCustomFieldsRequest(caller=viewer.caller, component_id=component_id),
        )
        found = tuple(response.custom_fields)
        keep = self._settings.component_cache_seconds
        if keep > 0 and generation == self._field_loads.generation:
            self._fields[key] = (self._clock() + keep, found)
            self._fields.move_to_end(key)
            while len(self._fields) > FIELD_CACHE_SIZE:
                self._fields.popitem(last=False)
        return found

    def forget_custom_fields(self) -> None:
        """Drop every cached field list (after this replica defined, changed or deleted one).

        A look-up already under way is not reused afterwards, and its answer,
        which may predate the change, is not kept.
        """
        self._fields.clear()
        self._field_loads.forget()

    async def _component_path(self, viewer: Viewer, component_id: int) -> str:
        try:
            component = await call(
                self.model.get_component,
                v1.GetComponentRequest(caller=viewer.caller, component_id=component_id),
            )
        except NotFound:
            return f"component {component_id}"
        return component.path

    async def _component_tree(self, viewer: Viewer) -> _ComponentTree:
        key = _principals(viewer)
        cached = self._trees.get(key)
        if cached is not None and cached.expires > self._clock():
            self._trees.move_to_end(key)
            return cached
        return await self._tree_loads.load(key, functools.partial(self._load_tree, viewer, key))

    async def _load_tree(self, viewer: Viewer, key: _PrincipalsKey) -> _ComponentTree:
        generation = self._tree_loads.generation
        caller = viewer.caller
        found: list[v1.Component] = []
        token = ""
        while True:
            response = await call(
                self.model.list_components,
                v1.ListComponentsRequest(
                    caller=caller,
                    parent_id=0,
                    include_archived=True,
                    page=v1.PageRequest(page_size=MAX_COMPONENT_PAGE_SIZE, page_token=token),
                ),
            )
            found.extend(response.components)
            token = response.next_page_token
            if not token:
                break
        tree = _ComponentTree(
            expires=self._clock() + self._settings.component_cache_seconds,
            components=tuple(found),
            paths={c.id: c.path for c in found},
        )
        if generation != self._tree_loads.generation:  # a component changed meanwhile
            return tree
        self._trees[key] = tree
        self._trees.move_to_end(key)
        while len(self._trees) > COMPONENT_CACHE_SIZE:
            self._trees.popitem(last=False)
        return tree


def _principals(viewer: Viewer) -> _PrincipalsKey:
    """What the Model's ACL filtering depends on: user id, sorted groups, admin."""
    caller = viewer.caller
    return (caller.user_id, tuple(sorted(caller.groups)), caller.admin)
