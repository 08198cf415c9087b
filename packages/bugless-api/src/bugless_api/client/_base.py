"""The connection, retry policy and argument checks every client call shares."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

import betterproto2
from grpclib.client import Channel

from bugless_core.backoff import Backoff
from bugless_core.clients import (
    ServiceAddress,
    call_errors,
    channel_connection,
    forget_connection,
)
from bugless_core.enums import enum_by_name
from bugless_core.errors import InvalidArgument, ResourceExhausted, Unavailable
from bugless_core.ids import check_id
from bugless_proto import v1
from bugless_proto.int_ranges import out_of_range

R = TypeVar("R")
E = TypeVar("E", bound=enum.Enum)


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long the client waits before trying a call again.

    The waits are :class:`bugless_core.backoff.Backoff`'s, with full jitter
    (the clients of an API that went away do not all come back at once).

    A call refused as of the connection's ended session, which the API
    renewed (:func:`made_again_renewed`), is no failure: it is made again
    whatever the policy, ``attempts=1`` included, and counts against none
    of its tries.

    Attributes:
        attempts: Tries in all (1 = no retries).
        initial_backoff: Seconds before the first retry of an unavailable call.
        max_backoff: Upper bound of one wait (also caps a server's retry-after).
        multiplier: Growth of the wait per attempt; full jitter is applied.

    Raises:
        ValueError: Waits that would not back off (see ``Backoff``).
    """

    attempts: int = 4
    initial_backoff: float = 0.2
    max_backoff: float = 10.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        _ = self.backoff  # refuses waits that would not back off now, not at a retry

    @property
    def backoff(self) -> Backoff:
        """The waits between tries of an unavailable call."""
        return Backoff(
            first_seconds=self.initial_backoff,
            max_seconds=self.max_backoff,
            factor=self.multiplier,
        )

    def delay(self, attempt: int, error: Exception) -> float:
        """Seconds to wait after failed try number ``attempt`` (0-based)."""
        if isinstance(error, ResourceExhausted) and error.retry_after is not None:
            return min(self.max_backoff, max(error.retry_after, 0.0))
        return self.backoff.delay(attempt + 1)


#: Refusals with SESSION_RENEWED in a row after which a call's refusal is raised.
MAX_SESSION_RENEWALS = 3


def made_again_renewed(error: Exception, renewals: int) -> bool:
    """Whether a call refused with ``error`` is made again as of a renewed session.

    The one rule of every call of the client, unary, upload, download and
    watch alike. An API answers UNAVAILABLE, reason ``SESSION_RENEWED``, to
    a call the Model refused as of the connection's ended session, once the
    API has a new session for the connection, when it could not send the
    call again itself (an upload, whose messages are gone) or the Model
    refused the call sent again too (that session ended as well). Nothing
    ran: the call is made again, a write included (it cannot be applied
    twice), at once (nothing is unavailable: the new session is there) and
    on the same connection (it carries the new session; a new connection
    would have the API ask the Authenticator for one more), whatever the
    :class:`RetryPolicy` (it bounds failures; this is none). Once per
    renewal: each such answer is one more session, and ``renewals`` counts
    those the call was already made again after; after
    :data:`MAX_SESSION_RENEWALS` in a row the refusal is raised, since
    sessions ended as fast as the Authenticator starts them are being ended
    on purpose, and making the call again would never end.
    """
    return (
        isinstance(error, Unavailable)
        and error.refused_with_session_renewed
        and renewals < MAX_SESSION_RENEWALS
    )


def enum_value(cls: type[E], value: E | str, what: str) -> E:
    """``cls`` member for an enum or a name such as ``"P1"``, ``"fixed"``, ``"wont-fix-obsolete"``.

    Read by :func:`bugless_core.enums.enum_by_name`; a name it refuses is the
    caller's mistake, found before anything is sent (the CLI exits with its
    usage code).

    Raises:
        InvalidArgument: The name is not a member; the message lists them.
    """
    try:
        return enum_by_name(cls, value, what)
    except InvalidArgument as exc:
        raise InvalidArgument(exc.message, metadata={**exc.metadata, "origin": "client"}) from None


def client_mistake(message: str) -> InvalidArgument:
    """An InvalidArgument found before sending: the CLI reports it as bad usage (exit 2)."""
    return InvalidArgument(message, metadata={"origin": "client"})


def check_wire_ranges(request: betterproto2.Message | Sequence[betterproto2.Message]) -> None:
    """Refuse ``request`` when one of its integers does not fit its field's wire type.

    ``request`` may be the messages of a client-streaming call, each looked at.

    betterproto2 sends such a value as its low bits, another value the
    server cannot tell apart (``page_size=2**32`` is 0: the default page), so
    every request the client sends is looked at first, every integer field
    of it, nested, repeated and map ones included
    (:func:`bugless_proto.int_ranges.out_of_range`, planned once per message
    class: a few microseconds a call).

    Raises:
        InvalidArgument: Origin client (the CLI's usage error); the message
            names the field, the value and the type
            (``page.page_size: 4294967296 is outside int32 (...)``).
    """
    for message in [request] if isinstance(request, betterproto2.Message) else request:
        problem = out_of_range(message)
        if problem is not None:
            raise client_mistake(problem)


def checked_ids(values: Iterable[int], field: str) -> list[int]:
    """``values`` as a list once each is an id (refused before encoding: no wrap)."""
    found = list(values)
    for i, value in enumerate(found):
        check_id(value, f"{field}[{i}]")
    return found


def page(size: int, token: str) -> v1.PageRequest:
    """The PageRequest of one list call."""
    return v1.PageRequest(page_size=size, page_token=token)


class ClientBase:
    """The channel and the retrying call under every method of the client.

    Attributes:
        account: Raw stub of ``bugless.v1.Account`` (any call, no retries).
        issues: Raw stub of ``bugless.v1.Issues``.
        components: Raw stub of ``bugless.v1.Components``.
        hotlists: Raw stub of ``bugless.v1.Hotlists``.
        saved_searches: Raw stub of ``bugless.v1.SavedSearches``.
        notifications: Raw stub of ``bugless.v1.Notifications``.
    """

    def __init__(
        self,
        address: str,
        cert: Path | str,
        key: Path | str,
        ca: Path | str,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        time_zone: str = "",
    ) -> None:
        """Prepare a client of ``address`` (``host:port``); connects on first call.

        Args:
            address: The API frontend.
            cert: PEM client certificate (its subject is mapped to your user).
            key: Its private key.
            ca: PEM bundle that signed the API server's certificate.
            timeout: Deadline of each call, in seconds.
            retry: Retry policy; the default tries up to 4 times.
            time_zone: IANA zone that days in this client's queries
                (``created>today-7``) are counted in, unless a call names
                another; "" is UTC.
        """
        self.address = ServiceAddress.parse(address, ca=Path(ca), cert=Path(cert), key=Path(key))
        self.time_zone = time_zone
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        # Downloads and watches are read at the caller's pace on the calls'
        # channel: its connection window holds eight streams' windows, so a
        # caller that pauses one to make another call is not kept waiting.
        self._channel: Channel = self.address.paced_channel()
        self.account = v1.AccountStub(self._channel)
        self.issues = v1.IssuesStub(self._channel)
        self.components = v1.ComponentsStub(self._channel)
        self.hotlists = v1.HotlistsStub(self._channel)
        self.saved_searches = v1.SavedSearchesStub(self._channel)
        self.notifications = v1.NotificationsStub(self._channel)
        self.webhooks = v1.WebhooksStub(self._channel)
        #: Custom fields per component id, as ``fields=`` by name last found them.
        self._custom_fields: dict[int, list[v1.CustomField]] = {}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def unreachable(self) -> str:
        """How a connection failure starts: the API this client was given, by address."""
        return f"the bugless API at {self.address.authority} is unreachable"

    @property
    def channel(self) -> Channel:
        """The grpclib channel (for instrumentation such as event listeners)."""
        return self._channel

    def close(self) -> None:
        """Close the connection."""
        self._channel.close()

    async def _call(
        self,
        method: Callable[..., Awaitable[R]],
        request: betterproto2.Message | Sequence[betterproto2.Message],
        *,
        idempotent: bool,
    ) -> R:
        check_wire_ranges(request)
        attempt = renewals = 0
        while True:
            used = channel_connection(self._channel)
            try:
                with call_errors(self.unreachable):
                    return await method(request, timeout=self.timeout)
            except (Unavailable, ResourceExhausted) as exc:
                if made_again_renewed(exc, renewals):
                    renewals += 1
                    continue
                # A rate-limited call and a call a draining server refused were
                # never run: retrying them is safe even when not idempotent.
                # Anything else may have run: a write is not made again.
                draining = isinstance(exc, Unavailable) and exc.refused_while_draining
                throttled = isinstance(exc, ResourceExhausted) and exc.retry_after is not None
                retryable = throttled or idempotent or draining
                if not retryable or attempt + 1 >= self.retry.attempts:
                    raise
                if draining:
                    # That connection leads back to the draining replica: the
                    # retry goes down a new one, to whichever replica answers.
                    forget_connection(self._channel, used)
                await asyncio.sleep(self.retry.delay(attempt, exc))
                attempt += 1

    async def whoami(self) -> v1.Identity:
        """Who the client certificate authenticates as."""
        return await self._call(self.account.who_am_i, v1.WhoAmIRequest(), idempotent=True)

    async def logout(self) -> v1.PersonCertificate:
        """Revoke the people-CA certificate this client presents (it stops working at once)."""
        return await self._call(self.account.logout, v1.LogoutRequest(), idempotent=False)
