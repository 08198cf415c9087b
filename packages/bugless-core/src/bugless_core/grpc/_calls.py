"""Follows every call on a grpclib server: context, metrics, error logs, draining.

Every handler of the server is wrapped (:meth:`CallTracker.track`, on the
servables before the server is built). The wrapper runs in the call's own
task once the request headers are in: there the call's
:class:`~bugless_core.grpc._peer.CallContext` is stored in a context variable
for the handler, the task is remembered, and the call is refused or checked
against the access rules. It also wraps the call stream's
``send_trailing_metadata``, through which grpclib sends the final status,
whatever ends the call. The call is counted as finished when its *task* is
done rather than at the trailers, because calls that end without trailers
(client cancelled, connection lost) would otherwise stay "in flight" forever
and hold up every drain; and because the task ends only after the trailers
are written, so a drain waiting on it never cuts a response short.

grpclib's server events (``RecvRequest``, ``SendTrailingMetadata``) would
give the same moments, but each listened-to event costs ~10 µs a call to
build and dispatch (bench/JOURNAL.md, session 10), twice on every call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from google.rpc import error_details_pb2
from grpclib.const import Handler, Status
from grpclib.exceptions import ProtocolError
from grpclib.server import Stream
from h2.exceptions import H2Error
from multidict import MultiDict, MultiDictProxy

from bugless_core._compat.grpclib import IServable, call_stream_id
from bugless_core._error_metadata import wait_seconds
from bugless_core.errors import (
    DRAINING_REASON,
    ERROR_DOMAIN,
    PermissionDenied,
    Unavailable,
    to_grpc_error,
)
from bugless_core.grpc._access import AccessRules, refusal_message
from bugless_core.grpc._metrics import GrpcServerMetrics, RunningCalls, split_method_name
from bugless_core.grpc._peer import CURRENT_CALL, CallContext, ConnectionRegistry
from bugless_core.outage import OutageLog
from bugless_core.service_address import host_port

logger = logging.getLogger("bugless_core.grpc")

#: Statuses that mean the server failed: logged as errors.
_SERVER_FAULTS = frozenset({Status.UNKNOWN, Status.INTERNAL, Status.DATA_LOSS})
#: Statuses that mean the server or a dependency is struggling: logged as a
#: warning once per method while they last (an OutageLog), each call at DEBUG.
_DEGRADED = frozenset({Status.UNAVAILABLE, Status.DEADLINE_EXCEEDED})

#: Methods that move an attachment's bytes (on the Model and the public API):
#: they last as long as the client takes to send or read a file, so a drain
#: waits longer for them (``drain_transfer_seconds``) than for other calls.
TRANSFER_METHODS = frozenset({"UploadAttachment", "DownloadAttachment"})

#: Shown to clients whose call arrives after the server stopped accepting calls.
SHUTTING_DOWN_MESSAGE = "this server is shutting down; retry, another instance will answer"


def _log_level(status: Status | None) -> int:
    if status in _SERVER_FAULTS:
        return logging.ERROR
    if status in _DEGRADED:
        return logging.WARNING
    # Client faults (bad argument, not found, ...) and calls the client gave up
    # on are the client's business: logging each would drown real problems.
    return logging.DEBUG


@dataclass
class _Series:
    """The labelled metric children of one method, looked up once.

    ``labels()`` builds and hashes the label tuple under a lock on every call;
    at thousands of calls a second that was 4-5% of a service's CPU.
    """

    service: str
    method: str
    in_flight: RunningCalls
    seconds: Any
    handled: dict[str, Any] = field(default_factory=dict)
    #: The method's outage log, made at its first degraded answer.
    outage: OutageLog | None = None


@dataclass(frozen=True)
class _CallKind:
    """What a drain makes of a method's calls, decided once per method.

    Attributes:
        blocking: A drain waits for its calls (not a never-ending stream).
        transfer: It moves an attachment's bytes (:data:`TRANSFER_METHODS`).
    """

    blocking: bool
    transfer: bool


class CallTracker:
    """Tracks the calls of one server and refuses new ones once told to.

    Its server serves the servables :meth:`track` returns and calls
    :meth:`call_ended` with each call's task once done
    (``CorkedServer(on_call_done=tracker.call_ended)``).

    Attributes:
        idle: Set while no call that a drain must wait for is running.
        transfers_idle: Set while no transfer (:data:`TRANSFER_METHODS`) is running.
    """

    def __init__(
        self,
        *,
        service_name: str,
        metrics: GrpcServerMetrics,
        connections: ConnectionRegistry,
        drain_exempt_methods: Collection[str],
        access: AccessRules | None,
    ) -> None:
        """Create a tracker; build the server from what :meth:`track` returns.

        Args:
            service_name: The bugless service, added to every log record.
            metrics: Where calls are counted and timed.
            connections: Registry that turns grpclib peers into connections.
            drain_exempt_methods: Methods a drain does not wait for because they
                never end on their own (health ``Watch``, reflection streams);
                they are cancelled when the server closes.
            access: Who may call each method; every call is checked before
                its handler runs. ``None`` checks nothing (``--insecure-local``
                plaintext, where callers have no certificate).
        """
        self._access = access
        self._service_name = service_name
        self._metrics = metrics
        self._connections = connections
        self._drain_exempt = frozenset(drain_exempt_methods)
        #: Each running call's context, metric series and kind, by its task.
        self._calls: dict[asyncio.Task[object], tuple[CallContext, _Series, _CallKind]] = {}
        #: Calls a drain waits for, with their streams (to reset one cut early).
        self._blocking: dict[asyncio.Task[object], Stream[Any, Any]] = {}
        self._transfers: set[asyncio.Task[object]] = set()
        self._refused: set[asyncio.Task[object]] = set()
        self._refusing = False
        self._series: dict[str, _Series] = {}
        self.idle = asyncio.Event()
        self.idle.set()
        self.transfers_idle = asyncio.Event()
        self.transfers_idle.set()

    def track(self, servables: Collection[IServable]) -> list[IServable]:
        """``servables`` with every call of every handler followed by this tracker."""
        return [_Tracked(servable, self._tracked) for servable in servables]

    @property
    def in_flight(self) -> int:
        """Number of calls running now, including long-lived streams."""
        return len(self._calls)

    @property
    def blocking_drain(self) -> int:
        """Number of running calls that a drain waits for."""
        return len(self._blocking)

    @property
    def refusing(self) -> bool:
        """Whether new calls are refused (:meth:`refuse_new_calls` was called)."""
        return self._refusing

    @property
    def transfers(self) -> int:
        """Number of running transfers (uploads, downloads), which a drain waits longer for."""
        return len(self._transfers)

    async def cancel_all_but_transfers(self) -> int:
        """Cancel every call a drain waits for except transfers; return how many.

        What closing the server does to them, but without closing the
        connections, which transfers may share: each call's task is cancelled
        and its stream reset (RST_STREAM), so that its client sees the stream
        end (``StreamTerminatedError``) as it would the connection's, rather
        than waiting for its deadline. A reset that cannot be written within
        :data:`_RESET_SECONDS` (the connection's buffer full behind a slow
        reader) is left behind: the client learns at the close.
        """
        cut = [
            (task, stream) for task, stream in self._blocking.items() if task not in self._transfers
        ]
        for task, _ in cut:
            task.cancel()
        if cut:
            resets = [asyncio.create_task(_reset(stream)) for _, stream in cut]
            _, late = await asyncio.wait(resets, timeout=_RESET_SECONDS)
            for reset in late:
                reset.cancel()
        return len(cut)

    def refuse_new_calls(self) -> int:
        """Answer every call opened from now on with UNAVAILABLE; GOAWAY where it is honoured.

        Closing the listening socket does not stop clients that already hold a
        connection from starting calls on it; this does, with the status that
        gRPC clients treat as "retry elsewhere", and tells each client that
        honours a graceful GOAWAY to open no more calls here
        (:meth:`~bugless_core.grpc._peer.ConnectionRegistry.stop`).

        Returns:
            How many connections were sent a GOAWAY.
        """
        self._refusing = True
        return self._connections.stop()

    def _tracked(self, method_name: str, func: _Func) -> _Func:
        """``func``, the handler of ``method_name``, with its calls followed."""
        # What a drain makes of the method's calls is known from its name: not
        # worked out again on every call.
        kind = _CallKind(
            blocking=method_name not in self._drain_exempt,
            transfer=split_method_name(method_name)[1] in TRANSFER_METHODS,
        )

        async def tracked(stream: Stream[Any, Any]) -> None:
            call = self._on_request(method_name, stream, kind)
            # Before the call is admitted: a refusal's status is counted too.
            send = stream.send_trailing_metadata

            async def send_trailing_metadata(
                *,
                status: Status = Status.OK,
                status_message: str | None = None,
                status_details: Any = None,
                metadata: Any = None,
            ) -> None:
                metadata = self._on_trailers(call, status, status_message, status_details, metadata)
                await send(
                    status=status,
                    status_message=status_message,
                    status_details=status_details,
                    metadata=metadata,
                )

            stream.send_trailing_metadata = send_trailing_metadata  # type: ignore[method-assign]
            self._admit(call, stream)
            await func(stream)

        return tracked

    def _on_request(
        self, method_name: str, stream: Stream[Any, Any], kind: _CallKind
    ) -> CallContext:
        call = CallContext(
            method_name=method_name,
            connection=self._connections.connection_of(stream.peer, stream.user_agent),
            metadata=MultiDictProxy(
                stream.metadata if stream.metadata is not None else MultiDict()
            ),
        )
        CURRENT_CALL.set(call)
        task = asyncio.current_task()
        if task is not None:
            self._begin(task, call, stream, kind)
        return call

    def _admit(self, call: CallContext, stream: Stream[Any, Any]) -> None:
        """Refuse the call while refusing new ones, or when its caller may not make it.

        A call its client opened before the server stopped accepting is not
        new, though it may reach here after (its task had not run yet): the
        GOAWAY sent at the stop promised to answer it.
        """
        method_name = call.method_name
        if self._refusing and not self._connections.arrived_before_stop(
            stream.peer, call_stream_id(stream)
        ):
            task = asyncio.current_task()
            if task is not None:
                self._refused.add(task)
            raise to_grpc_error(Unavailable(SHUTTING_DOWN_MESSAGE, reason=DRAINING_REASON))
        access = self._access
        if access is not None:
            connection = call.connection
            if not access.allows(
                method_name,
                verified=connection.certificate is not None,
                identity=connection.identity,
            ):
                has_row = access.row(method_name) is not None
                raise to_grpc_error(
                    PermissionDenied(
                        refusal_message(method_name, connection.identity, has_row=has_row)
                    )
                )

    def _on_trailers(
        self,
        call: CallContext,
        status: Status,
        status_message: str | None,
        status_details: Any,
        metadata: Any,
    ) -> Any:
        """Note the call's final status; the trailing metadata to send with it."""
        if _cancelled_by_peer(status):
            # grpclib answers a stream the client reset (or whose connection
            # dropped) by trying to send UNKNOWN trailers on it; nobody receives
            # them and nothing failed on our side: the call ends as CANCELLED.
            return metadata
        call.status = status
        call.status_message = status_message
        if status is Status.RESOURCE_EXHAUSTED:
            retry_after = _retry_after(status_details)
            if retry_after is not None:
                metadata = MultiDict(metadata or ())
                metadata["retry-after"] = retry_after
        return metadata

    def _series_of(self, method_name: str) -> _Series:
        series = self._series.get(method_name)
        if series is None:
            service, method = split_method_name(method_name)
            series = _Series(
                service=service,
                method=method,
                in_flight=self._metrics.running(service, method),
                seconds=self._metrics.handling_seconds.labels(service, method),
            )
            self._series[method_name] = series
        return series

    def _begin(
        self,
        task: asyncio.Task[object],
        call: CallContext,
        stream: Stream[Any, Any],
        kind: _CallKind,
    ) -> None:
        series = self._series_of(call.method_name)
        self._calls[task] = (call, series, kind)
        series.in_flight.value += 1
        if kind.blocking:
            self._blocking[task] = stream
            self.idle.clear()
            if kind.transfer:
                self._transfers.add(task)
                self.transfers_idle.clear()

    @staticmethod
    def _degraded(series: _Series, method_name: str) -> OutageLog:
        if series.outage is None:
            series.outage = OutageLog(
                method_name,
                logger=logger,
                meanwhile="its calls end so, each logged at DEBUG",
                loop=f"grpc:{method_name}",
                unit="calls",
            )
        return series.outage

    def call_ended(self, task: asyncio.Task[Any]) -> None:
        """Count the call of ``task`` as ended (its server calls this once the task is done).

        The server's one done-callback per call (``CorkedServer(on_call_done=...)``)
        calls it, rather than one more of the tracker's own: a task that never
        ran its handler, whose call was never begun, is ignored.
        """
        begun = self._calls.pop(task, None)
        if begun is not None:
            self._end(task, *begun)

    def _end(
        self, task: asyncio.Task[object], call: CallContext, series: _Series, kind: _CallKind
    ) -> None:
        # Only a call a drain waits for was counted in what a drain waits on.
        if kind.blocking:
            self._blocking.pop(task, None)
            if not self._blocking:
                self.idle.set()
            if kind.transfer:
                self._transfers.discard(task)
                if not self._transfers:
                    self.transfers_idle.set()
        refused = False
        if self._refused:  # only while refusing new calls
            refused = task in self._refused
            self._refused.discard(task)

        seconds = time.perf_counter() - call.started
        service, method = series.service, series.method
        code = "CANCELLED" if call.status is None else call.status.name
        series.in_flight.value -= 1
        handled = series.handled.get(code)
        if handled is None:
            handled = series.handled[code] = self._metrics.handled.labels(service, method, code)
        handled.inc()
        series.seconds.observe(seconds)

        if call.status is Status.OK:
            if series.outage is not None:
                series.outage.recovered()
            return
        level = logging.DEBUG if refused else _log_level(call.status)
        if level == logging.WARNING:
            # Degraded (a dependency away, a deadline missed): logged once for the
            # method's outage, not per call (a flood under traffic); each call at DEBUG.
            self._degraded(series, call.method_name).failed(
                f"{code}: {call.status_message or '(no message)'}"
            )
            level = logging.DEBUG
        if logger.isEnabledFor(level):
            logger.log(
                level,
                "%s ended with %s: %s",
                call.method_name,
                code,
                call.status_message or "(no message)",
                extra={
                    "service": self._service_name,
                    "grpc_service": service,
                    "grpc_method": method,
                    "grpc_code": code,
                    "grpc_message": call.status_message,
                    "duration_ms": round(seconds * 1000, 3),
                    "connection_id": call.connection.id,
                    "peer": _format_address(call.connection.address),
                },
            )


_Func = Callable[[Stream[Any, Any]], Awaitable[None]]

#: How long a drain waits to write the resets of the calls it cuts at the grace.
_RESET_SECONDS = 1.0


async def _reset(stream: Stream[Any, Any]) -> None:
    """Reset ``stream`` (RST_STREAM), unless it already ended or was reset."""
    # Raises when already reset, or closed: its trailers went out, or its client left.
    with contextlib.suppress(ProtocolError, H2Error):
        await stream.cancel()


class _Tracked:
    """A servable whose handlers are wrapped (an ``IServable``: its ``__mapping__``)."""

    def __init__(self, servable: IServable, wrap: Callable[[str, _Func], _Func]) -> None:
        self._servable = servable
        self._wrap = wrap

    def __mapping__(self) -> Mapping[str, Handler]:
        return {
            name: Handler(self._wrap(name, handler.func), *handler[1:])
            for name, handler in self._servable.__mapping__().items()
        }


def _cancelled_by_peer(status: Status) -> bool:
    """Whether trailers with ``status`` answer a call the client cancelled.

    When the client resets a stream, grpclib cancels the handler's task and
    then turns the resulting ``StreamTerminatedError`` into UNKNOWN trailers.
    A handler fault gives UNKNOWN too, but its task was never cancelled; a
    deadline cancels the task as well, but grpclib reports it as
    DEADLINE_EXCEEDED.
    """
    if status is not Status.UNKNOWN:
        return False
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _retry_after(details: object) -> str | None:
    """Whole seconds to wait, from the ErrorInfo of a ResourceExhausted error.

    Sent as the ``retry-after`` trailer (HTTP's header, rounded up the same
    way) so that clients and proxies that never decode status details still
    learn when to come back. None, and no trailer, for a value that is no
    wait (:func:`~bugless_core._error_metadata.wait_seconds`: "nan", "inf", "1e999",
    more than a year): the status and its message still go out.
    """
    for detail in details if isinstance(details, list) else ():
        if isinstance(detail, error_details_pb2.ErrorInfo) and detail.domain == ERROR_DOMAIN:
            value = detail.metadata.get("retry_after")
            if value:
                seconds = wait_seconds(value)
                return None if seconds is None else str(max(1, math.ceil(seconds)))
    return None


def _format_address(address: tuple[str, int] | None) -> str | None:
    if address is None:
        return None
    return host_port(*address)
