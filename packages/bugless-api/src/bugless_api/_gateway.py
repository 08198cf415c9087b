"""What every public service of the gateway shares: admission, callers, errors.

Each call goes through :meth:`GatewayService.__mapping__`'s wrapper before the
betterproto2 handler runs: the connection's identity is resolved (cached per
connection), the caller's rate limit is charged, and errors are mapped to gRPC
statuses in one place. Admission happens before the request message is even
read, so a refused call costs no decoding. A RESOURCE_EXHAUSTED carries the
exact wait in its ErrorInfo (``retry_after``); the core call tracker copies it,
rounded up to whole seconds as HTTP does, into the ``retry-after`` trailer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar

from grpclib.const import Handler
from grpclib.server import Stream

from bugless_api._coalesce import IssueReader
from bugless_api._coalesce_create import IssueCreator
from bugless_api._identity import (
    CallerIdentity,
    IdentityResolver,
    current_identity,
    set_current_identity,
)
from bugless_api._ratelimit import RateLimiter
from bugless_api._users import UserDirectory
from bugless_api._wire_issues import BATCH_CREATE_ISSUES, BATCH_GET_ISSUES
from bugless_api.settings import ApiSettings
from bugless_core.clients import (
    ASSERTION_REFUSALS,
    ASSERTION_RENEWAL,
    CALL_TALLY,
    CURRENT_ASSERTION,
    CallTally,
    call,
    refused_alone,
    renewal_helps,
)
from bugless_core.errors import (
    SESSION_RENEWED_REASON,
    BuglessError,
    FailedPrecondition,
    InvalidArgument,
    Unauthenticated,
    Unavailable,
)
from bugless_core.grpc import handler_errors
from bugless_proto import v1

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

_log = logging.getLogger("bugless.api")
P = ParamSpec("P")

#: ErrorInfo reason of a call not sent again because the connection's
#: certificate is another user's now (:func:`_identity_changed`).
IDENTITY_CHANGED_REASON = "IDENTITY_CHANGED"
R = TypeVar("R")


class _HasCaller(Protocol):
    caller: v1.Caller | None


class Gateway:
    """The backends and per-process state the public services share.

    Attributes:
        settings: The API settings.
        model: Stub of the Model service.
        model_transfers: Stub of the Model for attachment uploads and
            downloads, on a channel of their own
            (:meth:`~bugless_core.service_address.ServiceAddress.transfer_channel`):
            a download moves at its client's pace, and one that stopped
            reading must hold up no other call.
        model_watches: Stub of the Model for Watch streams, on a channel of
            their own
            (:meth:`~bugless_core.service_address.ServiceAddress.watch_channel`)
            for the same reason: a watch moves at its bot's pace.
        auth: Stub of the Authenticator.
        notifier: Stub of the notifier (``--notify``), for component webhooks.
        identities: Certificate to identity, cached per connection.
        users: Username and user id translation.
        limiter: Per-identity rate limit.
        issue_reader: Batches concurrent GetIssue calls (None: each on its own).
        issue_creator: Batches concurrent CreateIssue calls (None: each on its own).
    """

    def __init__(
        self,
        settings: ApiSettings,
        model: v1.ModelStub,
        auth: v1.AuthenticatorStub,
        notifier: v1.NotifierStub | None = None,
        *,
        on_feed_read: Callable[[float], None] | None = None,
        metrics_registry: CollectorRegistry | None = None,
        model_transfers: v1.ModelStub | None = None,
        model_watches: v1.ModelStub | None = None,
    ) -> None:
        """Serve through the given stubs (their channels are the caller's to close).

        ``on_feed_read``: called whenever the users' change feed was read, with
        the seconds since that read began (the metrics, ``UserCache(on_read=)``).
        ``metrics_registry``: where the feed's follower reports as a background
        loop (``UserCache(metrics_registry=)``). ``model_transfers``: the
        transfers' stub and ``model_watches`` the watches' (``model`` when None).
        """
        self.settings = settings
        self.model = model
        self.model_transfers = model_transfers if model_transfers is not None else model
        self.model_watches = model_watches if model_watches is not None else model
        self.auth = auth
        self.notifier = notifier
        timeout = settings.backend_timeout_seconds
        self.identities = IdentityResolver(
            auth, ttl_seconds=settings.identity_ttl_seconds, timeout_seconds=timeout
        )
        # A user the feed names (disabled, regrouped, renamed) is asked for
        # again on their connections' next call, not after identity_ttl_seconds.
        self.users = UserDirectory(
            auth,
            timeout_seconds=timeout,
            cache_seconds=settings.user_cache_seconds,
            changes_seconds=settings.user_changes_seconds,
            on_feed_read=on_feed_read,
            metrics_registry=metrics_registry,
            on_users_changed=self.identities.forget_users,
        )
        self.limiter = RateLimiter(settings.rate_limit)
        self.issue_reader = (
            IssueReader(self._batch_get_issues, self.users) if settings.batch_reads else None
        )
        self.issue_creator = (
            IssueCreator(self._batch_create_issues, self.users) if settings.batch_creates else None
        )

    def close(self) -> None:
        """Stop the background work (following the users' change feed)."""
        self.users.close()

    async def admit(self) -> CallerIdentity:
        """Authenticate the current call and charge its rate limit.

        The users' change feed is followed from the first call on (it drops
        the identities of users who changed), whether or not any call has
        needed a username translated yet.
        """
        self.users.cache.follow()
        return self.admit_known(await self.identities.identify())

    async def renewed_assertion(self, refused: Unauthenticated) -> str | None:
        """A new assertion for the current call's connection, after the Model refused its own.

        The :data:`~bugless_core.clients.ASSERTION_RENEWAL` of every admitted
        call: the Model refused a call because the assertion's session has
        ended (the Authenticator restarted with its sessions lost, an
        administrator ended them, the mapping entry changed) or its signing
        key is no longer published (a rotation dropped it), and refused it
        before running it, so :func:`bugless_core.clients.call` sends it once
        more with what this returns. The connection's identity is asked for
        again (once for all the calls refused at the same time): a
        certificate still mapped to the same user gets a new session or
        assertion, which becomes the call's identity and assertion from here
        on; the bot never hears of it.

        Raises:
            Unauthenticated: The Authenticator's own refusal (a disabled
                user, a certificate no longer mapped or revoked), told to
                the bot instead of the Model's "sign in again"; or, reason
                ``IDENTITY_CHANGED``, the certificate is another user's now
                (its mapping entry re-pointed): a call made as one user is
                never sent as another.
        """
        was, sent = current_identity(), CURRENT_ASSERTION.get()
        self.identities.forget_connection(sent)
        identity = await self.identities.identify()
        if identity.user_id != was.user_id:
            raise _identity_changed(was, identity)
        self._act_as(identity)
        renewed = identity.identity.assertion or None
        if renewal_helps(refused, sent or "", renewed):
            _log.info(
                "a Model call of %s was refused (%s): sent again with a new %s",
                identity.subject,
                refused.reason,
                "session" if refused.reason == "SESSION_ENDED" else "assertion",
                extra={"subject": identity.subject, "reason": refused.reason},
            )
        return renewed

    async def session_ended(self, refused: Unauthenticated) -> BuglessError:
        """What to answer a call the Model refused as of its assertion, not sent again.

        :meth:`renewed_assertion` sends the unary Model calls again, and
        opens a Watch or a download again; an upload (whose messages are
        gone) reaches here, as does a call refused again with its new
        session. The connection's identity is asked for again: a disabled
        user (or a certificate no longer mapped, or revoked) gets the
        Authenticator's own refusal, and a certificate that is another
        user's now UNAUTHENTICATED ``IDENTITY_CHANGED`` (the bot must not be
        told to make as that user a call it made as this one); otherwise the
        connection has a new session or assertion now, and the answer is
        UNAVAILABLE (reason ``SESSION_RENEWED``), which the bugless client
        retries as it retries any call that may be retried when a service is
        unavailable. An assertion refused as invalid whose renewal names the
        same key is not one a rotation dropped: that refusal stands
        (:func:`~bugless_core.clients.renewal_helps`).
        """
        was, sent = current_identity(), CURRENT_ASSERTION.get()
        self.identities.forget_connection(sent)
        try:
            identity = await self.identities.identify()
        except Unauthenticated as exc:
            return exc
        if identity.user_id != was.user_id:
            return _identity_changed(was, identity)
        if not renewal_helps(refused, sent or "", identity.identity.assertion or None):
            return refused
        _log.info(
            "a Model call of %s was refused (%s) and not sent again: answered %s",
            identity.subject,
            refused.reason,
            SESSION_RENEWED_REASON,
            extra={"subject": identity.subject, "reason": refused.reason},
        )
        return Unavailable(
            "this connection's session ended while the call was made, and the connection "
            "has a new one now: make the call again",
            reason=SESSION_RENEWED_REASON,
        )

    def admit_known(self, identity: CallerIdentity) -> CallerIdentity:
        """Charge the rate limit of the current call, whose caller is ``identity``.

        :meth:`admit` once the identity is known; a handler whose connection's
        identity is cached (:meth:`IdentityResolver.cached`) calls it directly.

        Raises:
            ResourceExhausted: The caller's budget is spent.
        """
        self.limiter.take(identity.user_id)
        self._act_as(identity)
        ASSERTION_RENEWAL.set(self.renewed_assertion)
        return identity

    @staticmethod
    def _act_as(identity: CallerIdentity) -> None:
        """Make ``identity`` the current call's caller, and its assertion the one it sends."""
        set_current_identity(identity)
        # The Model takes the caller of every call this one makes from the
        # assertion the Authenticator signed for this certificate's user.
        CURRENT_ASSERTION.set(identity.identity.assertion or None)

    async def _batch_get_issues(self, request: v1.BatchGetIssuesRequest) -> Any:
        timeout = self.settings.backend_timeout_seconds
        return await BATCH_GET_ISSUES.fetch(self.model, request, deadline_seconds=timeout)

    async def _batch_create_issues(self, request: v1.BatchCreateIssuesRequest) -> Any:
        timeout = self.settings.backend_timeout_seconds
        return await BATCH_CREATE_ISSUES.fetch(self.model, request, deadline_seconds=timeout)

    def require_notifier(self) -> v1.NotifierStub:
        """The notifier's stub.

        Raises:
            FailedPrecondition: This API was started without ``--notify``.
        """
        if self.notifier is None:
            msg = (
                "this API has no notifier (started without --notify): component webhooks "
                "cannot be managed through it"
            )
            raise FailedPrecondition(msg)
        return self.notifier

    async def model_call(
        self, method: Callable[..., Awaitable[R]], request: object, **kwargs: Any
    ) -> R:
        """Call a backend stub method with the backend deadline, mapping errors."""
        return await call(method, request, timeout=self.settings.backend_timeout_seconds, **kwargs)


def _identity_changed(was: CallerIdentity, now: CallerIdentity) -> Unauthenticated:
    """The refusal of a call made as ``was`` whose connection's certificate is ``now``'s.

    The certificate's mapping entry was pointed at another user while the
    call was under way: sending it again with the new identity would make
    as that user what the bot made as this one (a comment, a grant), so it
    is not sent; the bot's next call is made as the new user.
    """
    _log.warning(
        "a Model call of %s as %s was refused and not sent again: the certificate is %s now",
        now.subject,
        was.username,
        now.username,
        extra={"subject": now.subject, "user_id": was.user_id, "now_user_id": now.user_id},
    )
    return Unauthenticated(
        f"this connection's certificate ({now.subject}) signs in as {now.username!r} now, "
        f"not as {was.username!r}, whom this call was made as: it was not made; make it "
        f"again to make it as {now.username!r}",
        reason=IDENTITY_CHANGED_REASON,
    )


def _made_in_part(refused: Unauthenticated) -> Unauthenticated:
    """The refusal of a call of a request that had sent a write which may have run.

    SESSION_RENEWED tells the client to make the whole request again, which
    is safe only when no write of it may have run (reads do not count:
    :func:`~bugless_core.clients.refused_alone`). Here the request had sent
    one, so part of it may be done: the bot is told to read what is there
    before making it again, in the refusal's own reason (the client does not
    retry it by itself).
    """
    _log.warning(
        "a Model call of %s was refused (%s) after the request had made others: "
        "answered %s, not %s",
        current_identity().subject,
        refused.reason,
        refused.reason,
        SESSION_RENEWED_REASON,
        extra={"subject": current_identity().subject, "reason": refused.reason},
    )
    return Unauthenticated(
        "this connection's session ended while the call was made, after part of it may "
        "have been done: read what is there now (the issue, the hotlist...) before "
        "making the call again, or it may be applied twice",
        reason=refused.reason,
    )


def caller_of(message: _HasCaller) -> v1.Caller:
    """Put the authenticated caller into ``message``; refuse a caller set by the client.

    Raises:
        InvalidArgument: The client filled in ``caller`` itself.
    """
    given = message.caller
    if given is not None and (given.user_id or given.groups or given.admin):
        raise InvalidArgument(
            "caller: leave it empty; the API sets the caller from your client certificate",
            metadata={"field": "caller"},
        )
    caller = current_identity().caller
    message.caller = v1.Caller(
        user_id=caller.user_id, groups=list(caller.groups), admin=caller.admin
    )
    return message.caller


class GatewayService:
    """Mixin for the betterproto2 service bases: wraps every handler.

    Subclasses list it before the generated base
    (``class IssuesService(GatewayService, v1.IssuesBase)``) and set
    :attr:`gateway`.
    """

    gateway: Gateway

    def __mapping__(self) -> dict[str, Handler]:
        """The generated handlers, each admitted and error-mapped first."""
        handlers: dict[str, Handler] = super().__mapping__()  # type: ignore[misc]
        return {
            name: Handler(
                self._admitted(name, handler.func),
                handler.cardinality,
                handler.request_type,
                handler.reply_type,
            )
            for name, handler in handlers.items()
        }

    def _admitted(
        self, method: str, func: Callable[[Stream[Any, Any]], Awaitable[None]]
    ) -> Callable[[Stream[Any, Any]], Awaitable[None]]:
        gateway = self.gateway
        identities = gateway.identities

        async def handle(stream: Stream[Any, Any]) -> None:
            with handler_errors(method):
                # Every call but a connection's first is admitted without a
                # coroutine to make and run (IdentityResolver.cached).
                identity = identities.cached()
                if identity is None:
                    await gateway.admit()
                else:
                    gateway.admit_known(identity)
                counting = CALL_TALLY.set(CallTally())
                try:
                    await func(stream)
                except Unauthenticated as exc:
                    if exc.reason not in ASSERTION_REFUSALS:
                        raise
                    if not refused_alone():
                        raise _made_in_part(exc) from exc
                    raise await gateway.session_ended(exc) from exc
                finally:
                    CALL_TALLY.reset(counting)

        return handle
