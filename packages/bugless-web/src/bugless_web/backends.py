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
about that late; ``user_cache_seconds`` while the feed cannot be read). The
per-viewer caches (components, custom fields, hotlists) are
:mod:`bugless_web.viewer_caches`'. Each cache fills a missing or expired entry
with one call however many requests miss it at once
(:mod:`bugless_web.single_flight`).

Every unary call through :attr:`Backends.model` and :attr:`Backends.auth` is
retried once when a replica going away made it fail and retrying is safe
(:mod:`bugless_web.retries`), so a rolling restart of either service does not
show people the 503 page. Each has ``call_timeout_seconds``; an upload
(:meth:`Backends.upload_attachment`) and a download
(:meth:`Backends.download_attachment`) are bounded by how they move instead,
and go over a connection to the Model of their own, so that a browser that
stops reading holds up no page (:mod:`bugless_web.transfers`).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Collection, Iterable
from dataclasses import dataclass

from grpclib.client import Channel

from bugless_core.clients import call, warn_if_insecure
from bugless_core.errors import BuglessError, Unauthenticated
from bugless_core.failover import MODEL_WATCH_ROUTE
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
    RetryingAuthenticatorStub,
    RetryingCalls,
    RetryingModelStub,
    RetryingNotifierStub,
    counted_call,
)
from bugless_web.settings import WebSettings
from bugless_web.single_flight import SingleFlight
from bugless_web.transfers import download_from_model, upload_to_model
from bugless_web.viewer_caches import ViewerCaches

_log = logging.getLogger("bugless.web")
#: Most validated tokens remembered at once (oldest forgotten first).
TOKEN_CACHE_SIZE = 10_000
#: How long the Model's capabilities and the sign-in methods are reused.
INFO_TTL_SECONDS = 60.0
#: A cached identity is asked for again this long before its assertion expires.
ASSERTION_MARGIN = 30.0
#: Most custom field values remembered as nobody's username (oldest forgotten first).
NOT_USERS_CACHE_SIZE = 4_000


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


class Backends(ViewerCaches):
    """Clients of the Model and the Authenticator shared by every request.

    The caches of what each viewer may see of the Model's components, custom
    fields and hotlists are :class:`~bugless_web.viewer_caches.ViewerCaches`'.
    """

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
        super().__init__(model_stub, settings, clock)
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
        # Transfers move at a browser's pace, on a connection of their own
        # with a wider window: a stalled download holds up neither the pages
        # nor the other downloads (ServiceAddress.transfer_channel).
        self._transfer_channel: Channel = settings.model.transfer_channel()
        #: For uploads (:meth:`upload_attachment`): their deadline is the whole
        #: allowance, as the Model should know it; this replica watches progress.
        self.model_uploads = v1.ModelStub(
            self._transfer_channel,
            timeout=settings.upload_timeout_seconds + settings.call_timeout_seconds,
        )
        #: For downloads (:meth:`download_attachment`), likewise.
        self.model_downloads = v1.ModelStub(
            self._transfer_channel,
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
        self._not_users: OrderedDict[str, float] = OrderedDict()
        self._token_loads: SingleFlight[str, Viewer] = SingleFlight()
        self._capability_loads: SingleFlight[None, frozenset[str]] = SingleFlight()
        self._authenticator_loads: SingleFlight[None, list[v1.AuthenticatorInfo]] = SingleFlight()

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

    async def answering(self) -> None:
        """Ask the Model and the Authenticator one cheap call each, together.

        What ``/readyz`` asks, and what a worker asks once at start-up
        (:meth:`open_connections`), so the channels readiness uses are
        connected before the worker says it serves.

        Raises:
            BuglessError: a backend answered with an error, or not at all.
        """
        await asyncio.gather(
            call(self.model.get_server_info, v1.GetServerInfoRequest()),
            call(self.auth.list_authenticators, v1.ListAuthenticatorsRequest()),
        )

    async def open_connections(self) -> None:
        """Connect to the Model and the Authenticator now, within one call's timeout.

        The channels connect on their first call; left to ``/readyz``, a new
        worker's first probe paid for two connections (TCP, TLS, HTTP/2)
        inside its short timeout and could answer 503 on a busy host though
        both backends answered. Called at start-up, before the worker
        listens. A backend that does not answer is logged and start-up goes
        on: ``/readyz`` says so until it does.
        """
        try:
            async with asyncio.timeout(self._settings.call_timeout_seconds):
                await self.answering()
        except (BuglessError, TimeoutError) as exc:
            reason = exc.message if isinstance(exc, BuglessError) else "no answer in time"
            _log.warning(
                "the backends did not both answer at start-up (%s); /readyz says not ready "
                "until they do",
                reason,
            )

    def close(self) -> None:
        """Stop following the users' change feed, close the channels (on application shutdown)."""
        self._users.close()
        self._model_channel.close()
        self._transfer_channel.close()
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

        Pages look up the names their texts ``@mention`` here too, all
        optional: a mention of nobody is shown as text, and not asked about
        again for ``user_cache_seconds``.
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
