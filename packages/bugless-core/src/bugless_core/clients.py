"""How the frontends reach the Model and the Authenticator.

Both frontends are stateless and talk gRPC to the two services; this module is
the one place that knows how: addresses, optional mutual TLS between services,
deadlines, and turning a parsed query into the structured query the Model
takes (resolve ``me`` and usernames through the Authenticator in one batch
call, then convert).
"""

from __future__ import annotations

import copy
import datetime
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar, cast

from grpclib.client import Channel
from grpclib.const import Status
from grpclib.events import SendRequest, listen
from grpclib.exceptions import GRPCError, StreamTerminatedError

from bugless_core import limits
from bugless_core._compat.grpclib import channel_protocol, forget_channel_protocol
from bugless_core.assertions import METADATA_KEY, signing_key_id
from bugless_core.call_tally import (
    ASSERTION_REFUSALS,
    CALL_TALLY,
    CallTally,
    count_sent,
    refused_alone,
    renewing,
    reset_var,
    sending,
    uncount_if_refused,
)
from bugless_core.errors import (
    InvalidArgument,
    Unauthenticated,
    Unavailable,
    from_grpc_error,
    method_not_served,
)
from bugless_core.service_address import ServiceAddress
from bugless_core.usernames import username_key
from bugless_proto import v1

if TYPE_CHECKING:
    from bugless_core.search import Query

# ServiceAddress is re-exported: its home is service_address, which settings import
# without the gRPC client and the generated messages this module needs.
__all__ = [
    "ASSERTION_REFUSALS",
    "ASSERTION_RENEWAL",
    "CALL_TALLY",
    "CURRENT_ASSERTION",
    "ActingFor",
    "AssertionSource",
    "CallTally",
    "ServiceAddress",
    "acting_as",
    "acting_model",
    "call",
    "call_errors",
    "call_renewing",
    "channel_connection",
    "every_page",
    "follow_pages",
    "forget_connection",
    "forward_assertions",
    "refused_alone",
    "renewal_helps",
    "resolve_query",
    "warn_if_insecure",
]

_log = logging.getLogger("bugless_core.clients")
P = ParamSpec("P")
R = TypeVar("R")


class PagedRequest(Protocol):
    """A list call's request: it says which page it wants."""

    page: v1.PageRequest | None


class PagedResponse(Protocol):
    """A list call's response: where the next page starts (empty: this was the last)."""

    @property
    def next_page_token(self) -> str:
        """The token of the next page's request; empty after the last page."""
        ...


Q = TypeVar("Q", bound=PagedRequest)
A = TypeVar("A", bound=PagedResponse)


#: The identity assertion calls made in this context forward (see :func:`acting_as`).
CURRENT_ASSERTION: ContextVar[str | None] = ContextVar("bugless_assertion", default=None)


@contextmanager
def acting_as(assertion: str | None) -> Iterator[None]:
    """Make every gRPC call in the block carry ``assertion`` (``None``: none).

    The frontends wrap the handling of one request in it, with the assertion
    the Authenticator issued for the person behind the request; the Model
    derives its caller from that and nothing else. Tasks started inside the
    block inherit it (context variables are copied into new tasks).
    """
    reset = CURRENT_ASSERTION.set(assertion)
    try:
        yield
    finally:
        reset_var(CURRENT_ASSERTION, reset)


#: The route of the call :func:`call_errors` is making, noted as it is sent
#: (:func:`_add_assertion`): an early release's bare answer to a method it does
#: not serve names none, and :func:`~bugless_core.errors.from_grpc_error` names
#: the server to upgrade and the method from it. None outside ``call_errors``.
_CALLED: ContextVar[list[str] | None] = ContextVar("bugless_called", default=None)


async def _add_assertion(event: SendRequest) -> None:
    called = _CALLED.get()
    if called is not None:
        called[:] = [event.method_name]
    assertion = CURRENT_ASSERTION.get()
    if assertion:
        event.metadata[METADATA_KEY] = assertion
        count_sent(event.method_name)


def forward_assertions(channel: Channel) -> Channel:
    """Make ``channel`` send the :func:`acting_as` assertion with each call; return it.

    It also notes each call's route for :func:`call_errors` (which names the
    server to upgrade from it when an early release answers bare headers).
    """
    listen(channel, SendRequest, _add_assertion)
    return channel


def warn_if_insecure(service: str, **addresses: ServiceAddress) -> None:
    """Log a warning for each backend ``service`` reaches without mutual TLS.

    Only ``--insecure-local`` lets a frontend start that way; the warning
    comes at every start so that a debugging setting never goes unnoticed.
    """
    for name, address in addresses.items():
        if address.ca is None or address.cert is None:
            _log.warning(
                "%s reaches the %s service at %s with --insecure-local: no mutual TLS, "
                "so it proves no service identity; debugging on one machine only",
                service,
                name,
                address.authority,
                extra={"service": service, "insecure_local": True, "backend": name},
            )


def channel_connection(channel: Channel) -> object | None:
    """The HTTP/2 connection the channel's next call will use, if it has one now.

    Taken before a call, so that :func:`forget_connection` after a refusal
    forgets that very connection and not one opened since.
    """
    return channel_protocol(channel)


def forget_connection(channel: Channel, connection: object | None) -> None:
    """Make ``channel`` open a new connection for its next call, if it still uses ``connection``.

    After a call was refused by a draining server (``Unavailable`` with
    ``refused_while_draining``), the same connection leads to the same server
    for as long as it finishes its other calls: a retry on it is refused
    again. The old connection is not closed, so calls still running on it
    complete and the server closes it; only the connection the refused call
    went down is forgotten, so one another task has just opened to a healthy
    server is kept.
    """
    if connection is not None:
        forget_channel_protocol(channel, connection)


@contextmanager
def call_errors(unreachable: str) -> Iterator[None]:
    """Raise what a gRPC call fails with inside the block as a bugless error.

    The client half of the one mapping (:mod:`bugless_core.errors`): a status
    becomes its :class:`BuglessError` (:func:`from_grpc_error`), so callers
    see ``IssueVersionConflict`` or ``NotFound`` whichever service answered;
    a dropped or refused connection becomes :class:`Unavailable` rather than
    a transport exception. Unary calls go through :func:`call`; a stream is
    read inside this block.

    A call that ran out of its deadline (grpclib raises a bare
    ``TimeoutError``, an ``OSError`` since Python 3.11) reached the service,
    which may still be running it: it is :class:`Unavailable` too (a read
    may be tried again) but says it got no answer in time (:func:`_no_answer`),
    not that the service is unreachable, which would send an operator after
    the network rather than a slow service. A connection that timed out
    before it was made (``ETIMEDOUT``, with its errno) is unreachable.

    Args:
        unreachable: What the Unavailable message says first
            (``the bugless API is unreachable``); the cause follows it.
    """
    called: list[str] = []
    reset = _CALLED.set(called)
    with sending():
        try:
            yield
        except GRPCError as exc:
            error = from_grpc_error(exc, route=called[0] if called else "")
            uncount_if_refused(error)
            raise error from exc
        except TimeoutError as exc:
            if exc.errno is not None:
                raise Unavailable(f"{unreachable}: {exc}") from exc
            raise Unavailable(_no_answer(unreachable)) from exc
        except (StreamTerminatedError, OSError) as exc:
            raise Unavailable(f"{unreachable}: {exc}") from exc
        finally:
            reset_var(_CALLED, reset)


def _no_answer(unreachable: str) -> str:
    """What :func:`call_errors` says of a call that ran out of its deadline.

    ``unreachable`` names the service the way callers give it (``the model
    service is unreachable``, ``the bugless API at h:p is unreachable``):
    its subject then did not answer in time; any other wording (``the model
    service stream broke``) is followed by why.
    """
    subject = unreachable.removesuffix(" is unreachable")
    if subject != unreachable:
        return f"{subject} did not answer within the call's deadline"
    return f"{unreachable}: no answer within the call's deadline"


#: Renews the assertion of the calls made in this context, after a service
#: refused the one a call carried (:data:`ASSERTION_REFUSALS`): it makes the new
#: one current (:data:`CURRENT_ASSERTION`) and returns it, or None when there is
#: none; it raises why the caller has no session any more. Set by a frontend
#: whose caller can be signed in again without them (the API: a bot's
#: certificate); None (the default): a refusal is the caller's to handle.
ASSERTION_RENEWAL: ContextVar[Callable[[Unauthenticated], Awaitable[str | None]] | None] = (
    ContextVar("bugless_assertion_renewal", default=None)
)


def method_missing(exc: GRPCError) -> bool:
    """Whether ``exc`` says the server does not serve the method called.

    A server of an earlier release lacks the RPCs added since; a newer caller
    then tells the operator to upgrade it (docs/upgrades.md's order) rather
    than report an outage. The rule is :class:`~bugless_core.errors.MethodNotServed`'s
    (:func:`~bugless_core.errors.method_not_served`): a bugless server answers
    UNIMPLEMENTED naming the method (:class:`~bugless_core.grpc.CorkedServer`);
    one of a release before that, like a plain grpclib server, answers bare
    headers, which grpclib's client reads as UNKNOWN "Missing content-type
    header" before it reads the status: those servers are still out there
    (an upgrade's first step is one), so that counts too. A Model refusing a
    call its backend lacks the capability for (UNIMPLEMENTED, reason
    ``CAPABILITY_MISSING``) serves the method: not missing.
    """
    return method_not_served(exc)


def renewal_helps(refused: Unauthenticated, sent: str, renewed: str | None) -> bool:
    """Whether a call refused for its assertion ``sent`` may be made again with ``renewed``.

    Only for a refusal of :data:`ASSERTION_REFUSALS`, and a new assertion.
    One refused as invalid also needs its renewal signed with another key:
    the same key means the assertion was not refused for a dropped key
    (a Model trusting another Authenticator, say), which asking the
    Authenticator again does not mend, so the refusal stands as it was.
    """
    if refused.reason not in ASSERTION_REFUSALS or not renewed or renewed == sent:
        return False
    if refused.reason == "INVALID_ASSERTION":
        return signing_key_id(renewed) != signing_key_id(sent)
    return True


async def call(fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """Call a stub method, turning gRPC failures into bugless errors (:func:`call_errors`).

    A frontend shows :class:`BuglessError` messages to people; a dropped
    connection becomes :class:`Unavailable` ("a backend service is
    unreachable") rather than a transport exception. A call refused for its
    assertion's ended session is sent once more as :func:`call_renewing` says.
    """
    return await call_renewing("a backend service is unreachable", lambda: fn(*args, **kwargs))


async def call_renewing(unreachable: str, attempt: Callable[[], Awaitable[R]]) -> R:
    """Await ``attempt()`` inside :func:`call_errors`; once more if its assertion was renewed.

    A call (or a stream's opening: its first message awaited) refused for
    its assertion's ended session or dropped key (:data:`ASSERTION_REFUSALS`)
    is made once more, with the assertion :data:`ASSERTION_RENEWAL` gives,
    when the context has one and :func:`renewal_helps`: the service refused
    it before running it, so making it again is safe for a write too. What
    the renewal raises (the caller may not sign in again, or is someone
    else now) is raised instead.
    """
    sent = CURRENT_ASSERTION.get()
    try:
        with call_errors(unreachable):
            return await attempt()
    except Unauthenticated as exc:
        renew = ASSERTION_RENEWAL.get()
        if renew is None or not sent or exc.reason not in ASSERTION_REFUSALS:
            raise
        # The renewal's own look-ups are this call's, not writes of the request
        # (CALL_TALLY); the call sent again is counted as any call is, so a
        # write that runs then stays counted, and one refused again does not.
        with renewing():
            renewed = await renew(exc)
        if not renewal_helps(exc, sent, renewed):
            raise
        with call_errors(unreachable):
            return await attempt()


async def follow_pages(
    fetch: Callable[[str, int], Awaitable[A]],
    *,
    page_size: int,
    limit: int | None = None,
    count: Callable[[A], int] | None = None,
) -> AsyncIterator[A]:
    """Each page ``fetch(token, size)`` answers, from the first until one names no next page.

    The one paging loop of every list call, whoever makes the calls (the
    frontends' :func:`every_page`, the API client's retrying methods, the
    CLI): a response whose ``next_page_token`` is empty is the last. With
    ``limit``, the walk also stops once ``count`` says that many items came,
    and each call asks for no more than are still wanted (a ``limit`` of 3
    in pages of 2 asks for 2, then 1), so the last page is not read in full
    to be cut; a server may still answer more (a ``page_size`` of 0 is its
    default page), so a caller that promises ``limit`` cuts what it keeps.

    Args:
        fetch: Makes one call: the page token (empty: the first page) and
            how many items to ask for.
        page_size: How many items each call asks for, at most.
        limit: How many items are wanted in all (None: every page; 0 or
            less: none, and no call is made).
        count: How many items a page holds; needed with ``limit``.

    Raises:
        ValueError: ``limit`` without ``count``.
    """
    if limit is not None and count is None:
        raise ValueError("follow_pages: a limit needs the count of each page's items")
    token, seen = "", 0
    if limit is not None and limit <= 0:
        return
    while True:
        wanted = page_size
        if limit is not None and page_size > 0:
            wanted = min(page_size, limit - seen)
        response = await fetch(token, wanted)
        yield response
        token = response.next_page_token
        if limit is not None and count is not None:
            seen += count(response)
            if seen >= limit:
                return
        if not token:
            return


async def every_page(
    fn: Callable[[Q], Awaitable[A]], request: Q, *, page_size: int
) -> AsyncIterator[A]:
    """Each response of a list call, from the first page until one names no next page.

    :func:`follow_pages` over a stub method: each page is asked for with
    ``request``'s fields and ``page_size``, through :func:`call` (so a
    refusal arrives as its bugless error, and stops the walk); ``request``
    itself is not changed. A caller that wants everything says only what to
    keep of each page.

    Args:
        fn: The stub method of the list call (``model.list_components``).
        request: Its request, the ``page`` field aside.
        page_size: How many items each call asks for.
    """

    async def fetch(token: str, size: int) -> A:
        paged = copy.copy(request)
        paged.page = v1.PageRequest(page_size=size, page_token=token)
        return await call(fn, paged)

    async for response in follow_pages(fetch, page_size=page_size):
        yield response


async def resolve_query(
    query: Query,
    auth: v1.AuthenticatorStub,
    *,
    me: str | None,
    today: datetime.date | None = None,
    zone: datetime.tzinfo | None = None,
    users_by_name: Callable[[list[str]], Awaitable[dict[str, v1.User]]] | None = None,
) -> v1.StructuredQuery:
    """Turn a parsed query into the Model's structured query.

    The caller parses the text once (:func:`bugless_core.search.parse_query`)
    and keeps the tree for whatever else it shows (the explanation, sort
    links); this takes that tree. Usernames are resolved in one
    ``LookupUsers`` call, each with the placeholders merged into it (a
    term matches those ids too), whatever their case (``assignee:Bob`` is
    ``bob``, as the Authenticator matches usernames). ``me`` is the caller's
    user id (None when signed out); ``mention:me`` also looks up the caller's username (mentions are
    text). Days (``today-7``, ``2026-01-31``) run midnight to midnight in
    ``zone``, the caller's time zone (UTC when None); ``today`` defaults to
    the date there now. Unknown usernames (and ``me`` when signed out) raise
    :class:`bugless_core.search.QuerySyntaxError` with the position.
    ``users_by_name`` (usernames to the users the Authenticator knows by
    them, e.g. a :class:`bugless_core.user_cache.UserCache`'s) replaces the
    ``LookupUsers`` call, so a frontend can answer repeat queries from its
    cache, with that cache's staleness.

    Raises:
        InvalidArgument: The query names more people than one look-up takes.
    """
    # Imported here: every client imports this module, and only the frontends
    # resolve queries (a `bugless issue show` would parse no query for it).
    from bugless_core.search import mentions_me, to_structured, user_terms  # noqa: PLC0415

    names = sorted(user_terms(query))
    users: dict[str, str] = {}
    merged: dict[str, list[str]] = {}
    if names:
        if len(names) > limits.MAX_USER_LOOKUP:
            msg = f"the query names {len(names)} people; at most {limits.MAX_USER_LOOKUP}"
            raise InvalidArgument(msg)
        if users_by_name is not None:
            known = list((await users_by_name(names)).values())
        else:
            found = await call(auth.lookup_users, v1.LookupUsersRequest(usernames=names))
            known = list(found.users)
        # Usernames are case-insensitive (the Authenticator matches them so):
        # each name as the query spells it maps to the account's id.
        by_name = {username_key(user.username): user.user_id for user in known}
        users = {n: by_name[username_key(n)] for n in names if username_key(n) in by_name}
        merged = {user.user_id: list(user.merged_user_ids) for user in known}
    me_name = None
    if me is not None and mentions_me(query):
        found = await call(auth.get_users, v1.GetUsersRequest(user_ids=[me]))
        me_name = found.users[0].username if found.users else None
    zone = zone or datetime.UTC
    return to_structured(
        query,
        me=me,
        me_name=me_name,
        users=users,
        merged=merged,
        today=today or datetime.datetime.now(zone).date(),
        zone=zone,
    )


class ActingFor:
    """Identity assertions for the users a service acts for, by user id (cached).

    For services that act for a user without holding that user's session:
    the notifier reading as a recipient, an import job, an administrator's
    tool (``bugless dev``'s seeding). It asks the Authenticator's
    ``IssueAssertion``, which only the identities its ACCESS table names may
    call, and reuses an assertion until shortly before it expires.
    """

    def __init__(self, auth: v1.AuthenticatorStub, *, margin_seconds: float = 30.0) -> None:
        """Ask ``auth`` (a stub on a channel with an allowed service identity)."""
        self._auth = auth
        self._margin = margin_seconds
        self._cache: dict[str, tuple[float, str]] = {}

    async def assertion(self, user_id: str) -> str:
        """A valid assertion for ``user_id``.

        Raises:
            NotFound: no such user. PermissionDenied: the user is disabled,
            or this service may not ask.
        """
        cached = self._cache.get(user_id)
        now = time.time()
        if cached is not None and cached[0] - self._margin > now:
            return cached[1]
        identity = await call(self._auth.issue_assertion, v1.IssueAssertionRequest(user_id=user_id))
        expires = identity.assertion_expires_at
        expires_at = expires.timestamp() if expires is not None else now
        self._cache[user_id] = (expires_at, identity.assertion)
        return identity.assertion

    async def assertion_for(self, caller: v1.Caller) -> str:
        """An assertion for the user ``caller`` names (its other fields are ignored)."""
        return await self.assertion(caller.user_id)

    def forget(self, user_id: str) -> None:
        """Drop ``user_id``'s cached assertion (the Model refused it: its session ended)."""
        self._cache.pop(user_id, None)


class AssertionSource(Protocol):
    """Where :func:`acting_model` gets each caller's assertion.

    :class:`ActingFor` asks the Authenticator; a test stack that holds the
    token key signs them itself, with no Authenticator running
    (``LocalStack.acting_model(..., as_requested=True)``).
    """

    async def assertion_for(self, caller: v1.Caller) -> str:
        """An assertion for the user ``caller`` names."""
        ...

    def forget(self, user_id: str) -> None:
        """Drop what is kept of ``user_id``'s assertion (the Model refused it)."""
        ...


class _ActingStub:
    """A stub whose every call carries the assertion of its request's caller."""

    def __init__(self, stub: object, acting: AssertionSource) -> None:
        self._stub = stub
        self._acting = acting

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._stub, name)
        if not callable(method):
            return method
        acting = self._acting

        async def acting_call(request: Any, *args: Any, **kwargs: Any) -> Any:
            caller = getattr(request, "caller", None)
            if not (isinstance(caller, v1.Caller) and caller.user_id):
                with acting_as(None):
                    return await method(request, *args, **kwargs)
            try:
                with acting_as(await acting.assertion_for(caller)):
                    return await method(request, *args, **kwargs)
            except GRPCError as exc:
                if exc.status is not Status.UNAUTHENTICATED:
                    raise
            # The assertion's session ended (the user was disabled or signed
            # out everywhere): ask again; a disabled user gets a refusal.
            acting.forget(caller.user_id)
            with acting_as(await acting.assertion_for(caller)):
                return await method(request, *args, **kwargs)

        return acting_call


def acting_model(model: v1.ModelStub, acting: AssertionSource) -> v1.ModelStub:
    """``model`` making each unary call with an assertion for its request's ``caller``.

    The Model ignores the ``caller`` in a request: what it acts on is the
    assertion, which the Authenticator issues for the user named there (with
    that user's real groups and permissions, whatever the request says).
    """
    return cast("v1.ModelStub", _ActingStub(model, acting))
