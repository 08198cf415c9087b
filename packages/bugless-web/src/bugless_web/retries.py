"""One retry of a backend call that failed because a replica went away.

During a rolling restart of the Model or the Authenticator (several replicas
behind a Service), a page load can reach a replica that is draining: it
answers UNAVAILABLE, tagged ``DRAINING`` when it refused the call without
running it, or its connection drops. Another replica is usually ready a
moment later, so rather than show the 503 page the web tier tries once more
after a short jittered pause (jitter, so that every replica of the web tier
does not come back at the same instant):

* a read (:data:`bugless_core.reads.READ_ROUTES`) is retried after UNAVAILABLE or a dropped
  connection: running it twice changes nothing;
* any call, writes included, is retried after a ``DRAINING`` refusal: the
  server never ran it (recognised by
  :func:`bugless_core.failover.refused_while_draining`, the one rule every
  client of a draining replica shares);
* nothing else is retried: a write whose connection dropped, or that a
  replica answered UNAVAILABLE for another reason, may have been applied, and
  a deadline that passed means a slow backend that a second attempt would only
  keep busy for as long again.

A draining replica keeps its open connections for its grace period (while
calls in progress, such as a live page's ``Watch``, finish) and refuses every
new call on them, so the retry after a ``DRAINING`` refusal must not go down
the same connection: the channel is made to forget it (without closing it, so
the calls still running there can finish) and opens a new one, which the
Service routes to a replica that is not draining.

The retry sits where every unary call of the web tier passes: the stubs'
unary-call hook (:class:`bugless_proto.stubs.UnaryUnaryInterceptor`), so handlers
keep calling ``bugless_core.clients.call(stub.method, request)`` and even
calls made for the web by core helpers (``resolve_query``) are covered. The
``Watch`` stream is not a unary call and is never retried here; an upload is
sent again only after a ``DRAINING`` refusal
(:func:`bugless_core.failover.upload_again_if_refused`), and counted like the
unary calls (:func:`counted_call`, from :mod:`bugless_web.transfers`), as is
a download (:func:`call_code`), whose start (until its first message, before
the response starts) goes through :func:`send_with_retry` as a read
(:data:`bugless_core.reads.STREAM_READ_ROUTES`).

A service's outage is one log line whichever call meets it: the streams
(uploads, downloads, a live page's ``Watch``) feed the same
:class:`~bugless_core.outage.OutageLog` as the unary calls
(:meth:`RetryingCalls.outage_log`, :func:`record_call`, :func:`outage_fed`).
They used to feed none, so a Model that could not be reached while people
only attached or downloaded files went unlogged, and one met by pages and
downloads alike was "working again" at the next page while the downloads
still failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

from bugless_core.backoff import Backoff
from bugless_core.clients import channel_connection, forget_connection
from bugless_core.errors import BuglessError, InvalidArgument
from bugless_core.failover import refused_while_draining
from bugless_core.outage import OutageLog
from bugless_core.reads import READ_ROUTES, STREAM_READ_ROUTES
from bugless_proto import v1
from bugless_proto.int_ranges import out_of_range
from bugless_proto.stubs import UnaryUnaryInterceptor

if TYPE_CHECKING:
    from bugless_web.metrics import WebMetrics

_log = logging.getLogger("bugless.web")
T = TypeVar("T")

#: A download's start is retried as a read (:data:`STREAM_READ_ROUTES`: the
#: watch there is never sent through :func:`send_with_retry`).
_RETRIED_READS = READ_ROUTES | STREAM_READ_ROUTES
#: Codes of a call the service did not answer but that do not say it is
#: away either (a deadline passed: slow; cancelled: the browser left).
_NOT_ANSWERED = frozenset({Status.DEADLINE_EXCEEDED.name, Status.CANCELLED.name, "UNKNOWN"})
#: The pause before the retry: drawn uniformly from 50 to 200 ms.
RETRY_BACKOFF = Backoff(first_seconds=0.2, max_seconds=0.2, jitter=0.75)

_Send = Callable[..., Awaitable[T]]


def refuse_out_of_range(request: Any) -> None:
    """Refuse a request one of whose integers its field's wire type cannot hold.

    betterproto2 would send such a value as its low bits, another value
    the backend cannot tell apart (a rank to 4294967297 arrives as 0, a
    component past int64 as a small one that may exist). The pages read
    their numbers within range where they can name the form's field; this
    is the net under them, for every call the web makes: a 400 naming the
    request's field (``position: 4294967296 is outside int32 (...)``), and
    nothing sent.

    Raises:
        InvalidArgument: naming the field, the value and the type.
    """
    problem = out_of_range(request)
    if problem is not None:
        raise InvalidArgument(f"{problem}; nothing was changed")


class RetryingCalls(UnaryUnaryInterceptor):
    """Mixed into a stub (listed first): one retry where :func:`send_with_retry` allows it.

    The service's outage is logged here too, once (an
    :class:`~bugless_core.outage.OutageLog` per stub): a WARNING at the first
    call that finds it unavailable (after the retry), a reminder a minute,
    an INFO at the first call it answers again. Each page that meets it used
    to log its own WARNING ("backend unavailable"), a line per request under
    traffic; the 503 page itself is now logged at DEBUG only.

    Attributes:
        metrics: Where each call is counted and timed (``--metrics-port``);
            ``None`` counts nothing.
    """

    metrics: WebMetrics | None = None
    _outage: OutageLog | None = None

    async def intercept_unary_unary(
        self, send: _Send[T], route: str, request: Any, response_type: type[T], **options: Any
    ) -> T:
        """Send through :func:`send_with_retry`, counted when metrics are on.

        A request with an integer its field cannot hold is refused first
        (:func:`refuse_out_of_range`): never sent, counted or an outage.
        """
        refuse_out_of_range(request)
        channel: Channel = self.channel  # type: ignore[attr-defined]
        try:
            if self.metrics is None:
                answer = await send_with_retry(
                    channel, send, route, request, response_type, **options
                )
            else:
                answer = await _counted(
                    self.metrics, channel, send, route, request, response_type, **options
                )
        except Exception as exc:
            record_call(self.outage_log(route), route, exc)
            raise
        self.outage_log(route).recovered()
        return answer

    def outage_log(self, route: str) -> OutageLog:
        """This stub's service's outage log (``/bugless.v1.Model/GetIssue``: the Model's).

        The one log of the service's outages in this process: the streams
        that bypass this stub's hook feed it too (:func:`outage_fed`).
        """
        if self._outage is None:
            service = route.split("/")[1].rpartition(".")[2] or route
            self._outage = OutageLog(
                f"calls to the {service}",
                logger=_log,
                meanwhile="pages that need it answer 503",
                loop=f"web:{service}",
                unit="calls",
            )
        return self._outage


class RetryingModelStub(RetryingCalls, v1.ModelStub):
    """The Model's stub, with one retry of the calls :func:`send_with_retry` allows."""


class RetryingAuthenticatorStub(RetryingCalls, v1.AuthenticatorStub):
    """The Authenticator's stub, with one retry of the calls allowed."""


class RetryingNotifierStub(RetryingCalls, v1.NotifierStub):
    """The notifier's stub (admin page), with one retry of the calls allowed."""


async def _counted(
    metrics: WebMetrics,
    channel: Channel,
    send: _Send[T],
    route: str,
    request: Any,
    *args: Any,
    **options: Any,
) -> T:
    """:func:`send_with_retry`, with its outcome in ``metrics`` (the code a gRPC client sees)."""
    with counted_call(metrics, route):
        return await send_with_retry(
            channel, send, route, request, *args, on_retry=metrics.retried, **options
        )


def record_call(outage: OutageLog, route: str, error: BaseException | None) -> None:
    """Tell ``outage`` how a call to ``route`` ended: with ``error``, or answered (``None``).

    UNAVAILABLE (:func:`call_code`: the service's status, a connection
    refused or dropped) is a failed call of the outage; an answer, a refusal
    included, ends it; a call not answered (a deadline that passed, a
    request abandoned) says neither.
    """
    code = call_code(error)
    if error is not None and code == Status.UNAVAILABLE.name:
        outage.failed(error, during=route.rpartition("/")[2], stacklevel=3)
    elif code not in _NOT_ANSWERED:
        outage.recovered(stacklevel=3)


@contextlib.contextmanager
def outage_fed(outage: OutageLog | None, route: str) -> Iterator[None]:
    """:func:`record_call` of the call (or the step of a stream) made inside the block.

    Put it around the gRPC call itself, inside any translation of its errors
    (``call_errors``), so that it sees the driver's error, not the message
    made of it; a ``None`` log records nothing.
    """
    if outage is None:
        yield
        return
    try:
        yield
    except Exception as exc:
        record_call(outage, route, exc)
        raise
    record_call(outage, route, None)


@contextlib.contextmanager
def counted_call(metrics: WebMetrics, route: str) -> Iterator[None]:
    """Count and time the call to ``route`` made inside the block, by the code it ended with.

    The code is :func:`call_code` of what the block raised. Every call of the
    web tier is counted here: unary calls (:class:`RetryingCalls`) and
    uploads (:mod:`bugless_web.transfers`); a download, whose call outlives
    any block (it ends with the response's body), calls
    ``metrics.call_finished`` with :func:`call_code` itself.
    """
    started = time.perf_counter()
    error: BaseException | None = None
    try:
        yield
    except BaseException as exc:
        error = exc
        raise
    finally:
        metrics.call_finished(route, call_code(error), time.perf_counter() - started)


def call_code(error: BaseException | None) -> str:
    """The code a gRPC client sees for a call that ended with ``error`` (``None``: OK).

    The server's status, or ``DEADLINE_EXCEEDED`` for a deadline that passed,
    ``UNAVAILABLE`` for a connection that failed, ``CANCELLED`` for a request
    abandoned (a task cancelled, a download's body closed by a browser that
    went away). A :class:`~bugless_core.errors.BuglessError` (a limit of the
    web's own, such as a transfer's, or a status already mapped) counts as
    its ``grpc_status``.
    """
    if error is None:
        return "OK"
    if isinstance(error, GRPCError):
        return error.status.name
    if isinstance(error, TimeoutError):  # an OSError: before those
        return Status.DEADLINE_EXCEEDED.name
    if isinstance(error, (StreamTerminatedError, OSError)):
        return Status.UNAVAILABLE.name
    if isinstance(error, (asyncio.CancelledError, GeneratorExit)):
        return Status.CANCELLED.name
    if isinstance(error, BuglessError):
        return error.grpc_status.name
    return Status.UNKNOWN.name


async def send_with_retry(
    channel: Channel,
    send: _Send[T],
    route: str,
    request: Any,
    *args: Any,
    on_retry: Callable[[str], None] | None = None,
    **options: Any,
) -> T:
    """``send(route, request, ...)``, once more if the failure allows it (see the module).

    ``on_retry(route)`` is called before the second try (the metrics' count).

    Raises:
        GRPCError: The call failed, and the retry too if one was allowed.
        StreamTerminatedError: The connection dropped (likewise).
        OSError: No connection could be made (likewise).
    """
    used = channel_connection(channel)
    try:
        return await send(route, request, *args, **options)
    except GRPCError as exc:
        refused = refused_while_draining(exc)
        if not (refused or (exc.status is Status.UNAVAILABLE and route in _RETRIED_READS)):
            raise
        if refused:
            forget_connection(channel, used)
        failure = f"{exc.status.name}: {exc.message}"
    except (StreamTerminatedError, OSError) as exc:
        if isinstance(exc, TimeoutError) or route not in _RETRIED_READS:
            raise
        failure = f"connection failed: {exc!r}"
    pause = RETRY_BACKOFF.delay(1)
    _log.info(
        "%s failed (%s); trying once more in %.0f ms",
        route,
        failure,
        pause * 1000,
        extra={"route": route, "failure": failure},
    )
    if on_retry is not None:
        on_retry(route)
    await asyncio.sleep(pause)
    return await send(route, request, *args, **options)
