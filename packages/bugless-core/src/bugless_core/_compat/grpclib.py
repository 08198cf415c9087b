"""Everything bugless_core does with grpclib's private surface, in one place.

grpclib is pinned below 0.5 because of these; nothing public offers them:

* ``grpclib._typing.IServable``, the type of a servable (re-exported here);
* ``Server._protocol_factory`` and ``Channel._protocol_factory``, the hook
  that builds a connection's HTTP/2 protocol (the corked transport wraps it:
  :class:`ProtocolWrappingServer`, :class:`ProtocolWrappingChannel`);
* ``Channel._protocol``, the connection a channel's next call uses (a
  frontend forgets it after a draining server refused a call);
* ``Server._mapping``, the handlers by path that every connection's
  ``request_handler`` looks a call's path up in with ``mapping.get``: a
  server given ``unmapped`` answers a path it does not map with that
  handler (:class:`ProtocolWrappingServer`), where grpclib answers bare
  headers that its own client reads as UNKNOWN "Missing content-type header";
* ``Server._server``, the listening ``asyncio.Server`` (a drain closes only
  the listening sockets, which ``Server.close`` cannot do without also
  cancelling every running call);
* ``Peer._transport``, the transport of a call's connection (the peer
  certificate in DER form needs its SSL object);
* ``grpclib.server.Stream._stream``, a server call's HTTP/2 stream, for its
  id (:func:`call_stream_id`: a draining server answers the calls opened
  before it stopped, :mod:`bugless_core.grpc._goaway`);
* ``grpclib.protocol.Connection._connection``, a connection's h2
  ``H2Connection`` (:func:`h2_connection`): the corked protocol changes its
  settings, and ``/metrics`` reads its flow-control windows
  (:mod:`bugless_core.grpc._windows`);
* ``H2Protocol.handler`` (what receives a connection's calls, set from the
  constructor argument) and ``grpclib.server.Handler._tasks`` (each call's
  handler task, by stream): a server connection's handler is wrapped in
  :class:`_ReleasingHandler`, see below;
* ``grpclib.protocol.EventsProcessor`` (``H2Protocol.processor``), what
  turns a connection's h2 events into its streams' progress, with its
  ``streams`` by id, ``register`` and ``process_connection_terminated``:
  a client connection's is a :class:`GracefulGoawayProcessor`, see below.

**Every stream is released, once.** grpclib's server handler creates a task
per call (``Handler.accept``), and only that task's ``finally`` runs the
``release_stream`` that acknowledges the call's unread request data, which
gives that flow-control credit back to the connection. A call reset before its
task first ran (HEADERS, DATA and RST_STREAM read at once: a server that was
not scheduled for a moment, paused or throttled, while its clients cancelled
calls) has its task cancelled before its first step, so that ``finally``
never runs and the credit is lost for good: after enough of them the
connection's window is 0 and every call on it times out for as long as it
lives. :class:`ProtocolWrappingServer` therefore hands each call's task a
release that runs at most once (:class:`ReleaseOnce`) and also runs it when
the task is done, however it ended. Channels need nothing of the kind: a
call's stream is registered and released in the caller's own task, with no
``await`` between registering it and keeping its release
(``grpclib.client.Stream.send_request``), and ``Stream.__aexit__`` releases in
its ``finally``, so a cancelled call always gives back what it did not read.

**A graceful GOAWAY ends only the calls it was not going to answer.** grpclib
closes a client connection on any GOAWAY and fails every call on it with
``StreamTerminatedError`` ("Received GOAWAY frame"), which no client may send
again (it may have run): the calls the server said it would finish (stream
ids up to ``last_stream_id``) are cut, and the ones it said it never
processed look no different. :class:`GracefulGoawayProcessor` (with h2 kept
from closing the connection, :func:`bugless_core._compat.h2.keep_streams_on_graceful_goaway`)
lets the first finish, fails the others (and a stream a call opened after
the GOAWAY above ``last_stream_id``; one at or below it, as under the first
GOAWAY of a two-step shutdown, which names ``2**31 - 1``, may be run, so it
is answered here) with an error its owner says is safe to send again, has
the channel connect anew for its next call, and closes the connection once
its last call ends. A GOAWAY with an error code still closes everything, as
grpclib does.

:func:`verify` checks the class-level items on import and raises
:class:`GrpclibSurfaceChanged` naming the attribute and the installed
version; :func:`verify_live` checks the instance-level ones, which
``tests/test_compat.py`` runs on a real server, channel and call.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
from collections.abc import Callable
from typing import Any, cast

from grpclib._typing import IServable
from grpclib.client import Channel
from grpclib.const import Handler as MethodHandler
from grpclib.protocol import (
    AbstractHandler,
    Connection,
    EventsProcessor,
    H2Protocol,
    Peer,
    Stream,
)
from grpclib.server import Handler, Server
from grpclib.server import Stream as ServerStream
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import ConnectionTerminated

__all__ = [
    "GRPCLIB_VERSION",
    "CallDone",
    "GracefulGoawayProcessor",
    "GrpclibSurfaceChanged",
    "IServable",
    "ProtocolWrappingChannel",
    "ProtocolWrappingServer",
    "ReleaseOnce",
    "channel_protocol",
    "forget_channel_protocol",
    "h2_connection",
    "peer_transport",
    "server_listener",
    "verify",
    "verify_live",
]

#: The installed grpclib, named in every error of this module.
GRPCLIB_VERSION = importlib.metadata.version("grpclib")


class GrpclibSurfaceChanged(RuntimeError):
    """The installed grpclib no longer has something bugless_core relies on."""

    def __init__(self, attribute: str, problem: str) -> None:
        """Name the attribute, what is wrong with it, and the installed version."""
        super().__init__(
            f"grpclib {GRPCLIB_VERSION}: {attribute} {problem}; bugless_core relies on it "
            "(see bugless_core._compat.grpclib), so adapt that module or pin grpclib back "
            "to the range bugless-core declares"
        )
        self.attribute = attribute


class ReleaseOnce:
    """A stream's ``release_stream`` that does its work the first time it is called only.

    grpclib's own raises ``KeyError`` when called twice; this one is called by
    the call's task (its ``finally``) and by the task's done-callback, and
    whichever comes first releases. It takes and ignores the done task.
    """

    __slots__ = ("_release",)

    def __init__(self, release: Callable[[], Any]) -> None:
        """Wrap ``release``."""
        self._release: Callable[[], Any] | None = release

    @property
    def released(self) -> bool:
        """Whether the stream is released."""
        return self._release is None

    def __call__(self, *_done: object) -> None:
        """Release the stream unless that is done already."""
        release, self._release = self._release, None
        if release is not None:
            release()


#: What a server is told of each call's task once it is done (however it ended).
CallDone = Callable[["asyncio.Task[None]"], None]


class _ReleasedThenDone:
    """One done-callback for a call's task: its stream's release, then the server's ``CallDone``.

    Each done-callback of a task is a loop callback of its own when the task
    ends; a call's needs one, not two.
    """

    __slots__ = ("_on_done", "_release")

    def __init__(self, release: ReleaseOnce, on_done: CallDone) -> None:
        self._release = release
        self._on_done = on_done

    def __call__(self, task: asyncio.Task[None]) -> None:
        self._release()
        self._on_done(task)


class _ReleasingHandler(AbstractHandler):
    """A server connection's grpclib ``Handler``, each call's stream released once, always.

    See the module docstring: a call reset before its task started would
    otherwise keep its unread data's flow-control credit for good. With
    ``on_call_done``, that is called with each call's task once it is done,
    from the same done-callback.
    """

    def __init__(self, handler: Handler, on_call_done: CallDone | None = None) -> None:
        """Wrap the ``Handler`` grpclib built for one connection."""
        if not isinstance(vars(handler).get("_tasks"), dict):
            raise GrpclibSurfaceChanged(
                "grpclib.server.Handler._tasks", "does not hold the handler tasks by stream"
            )
        self.handler = handler
        self._on_call_done = on_call_done

    def accept(self, stream: Stream, headers: Any, release_stream: Callable[[], None]) -> None:
        """Start the call's task; release its stream once it is done, had it started or not."""
        release = ReleaseOnce(release_stream)
        self.handler.accept(stream, headers, release)
        on_done = self._on_call_done
        self.handler._tasks[stream].add_done_callback(
            release if on_done is None else _ReleasedThenDone(release, on_done)
        )

    def cancel(self, stream: Stream) -> None:
        """Cancel the call's task (the stream was reset)."""
        self.handler.cancel(stream)

    def close(self) -> None:
        """Cancel every call's task (the connection is gone or the server closes)."""
        self.handler.close()


class GracefulGoawayProcessor(EventsProcessor):
    """A client connection's events processor that honours a graceful GOAWAY.

    See the module docstring. ``unprocessed()`` makes the error a call the
    server did not process fails with; its owner should read it as safe to
    send again (bugless uses the DRAINING refusal, which every client of a
    bugless service already sends again on a new connection).

    Attributes:
        last_stream_id: The highest stream id the server said it answers,
            once it sent a graceful GOAWAY (the lowest of several); None before.
    """

    def __init__(
        self,
        handler: AbstractHandler,
        connection: Connection,
        *,
        unprocessed: Callable[[], Exception],
    ) -> None:
        """Process ``connection``'s events as grpclib does, but for a graceful GOAWAY."""
        super().__init__(handler, connection)
        self._unprocessed = unprocessed
        self.last_stream_id: int | None = None

    def register(self, stream: Stream) -> Callable[[], None]:
        """Track the stream; once gone away, refuse it if unprocessed; close after the last."""
        release = super().register(stream)
        if self.last_stream_id is not None and (stream.id or 0) > self.last_stream_id:
            # Its call had taken this connection before the GOAWAY was read, and
            # sent it after: the server ignores it. Failed from the loop, not
            # from inside the task that is opening it (a cancel from there
            # would land at the task's next await, wherever that is). A stream
            # at or below last_stream_id (a two-step shutdown's first GOAWAY
            # names 2**31 - 1) is one the server may still run: it is sent
            # already, so it is answered here, or refused by a later GOAWAY
            # naming a lower id, never sent again while it may run.
            asyncio.get_running_loop().call_soon(self._refuse, stream)

        def releasing() -> None:
            release()
            if self.last_stream_id is not None and not self.streams:
                self._close_soon()

        return releasing

    def process_connection_terminated(self, event: ConnectionTerminated) -> None:
        """Let the calls up to ``last_stream_id`` finish; refuse the rest; no new ones here."""
        if event.error_code != ErrorCodes.NO_ERROR or event.last_stream_id is None:
            super().process_connection_terminated(event)
            return
        last = event.last_stream_id
        if self.last_stream_id is not None:
            last = min(last, self.last_stream_id)
        self.last_stream_id = last
        # A client's handler is told its connection is lost: the channel connects
        # anew for its next call, leaving this connection to its calls.
        self.handler.close()
        for stream_id, stream in list(self.streams.items()):
            if stream_id > last:
                self._refuse(stream)
        if not self.streams:
            self._close_soon()

    def _refuse(self, stream: Stream) -> None:
        # Taken off the stream, so that the connection's end (the server closes
        # it soon after) does not replace the refusal with "Connection lost"
        # before the call's task has run to read it.
        wrapper, stream.wrapper = stream.wrapper, None
        if wrapper is not None:
            wrapper.cancel(self._unprocessed())

    def _close_soon(self) -> None:
        asyncio.get_running_loop().call_soon(self._close_if_idle)

    def _close_if_idle(self) -> None:
        # A call that had taken this connection may have opened a stream the
        # server still runs since the close was planned: it is answered first.
        if not self.streams:
            self.close("the server went away (GOAWAY) and its last call here has ended")


class _AnsweringMapping(dict[str, MethodHandler]):
    """A server's handlers by path whose ``get`` answers every path, mapped or not.

    grpclib's ``request_handler`` asks ``mapping.get(path)`` once per call;
    for a path not mapped this returns ``unmapped(path)``. Only ``get``
    differs: ``in``, ``[]`` and iteration see the mapped paths only.
    """

    def __init__(
        self, mapping: dict[str, MethodHandler], unmapped: Callable[[str], MethodHandler]
    ) -> None:
        super().__init__(mapping)
        self._unmapped = unmapped

    def get(self, path: str, default: Any = None) -> Any:
        handler = super().get(path)
        return self._unmapped(path) if handler is None else handler


class ProtocolWrappingServer(Server):
    """A grpclib ``Server`` whose connections' protocol goes through :meth:`wrap_protocol`.

    Each connection's calls release their streams once, always
    (:class:`_ReleasingHandler`, see the module docstring). With
    ``on_call_done``, each call's task is handed to it once done, however it
    ended (had it started or not), in the same done-callback as the release.
    With ``unmapped``, a call of a path no servable maps is handled by
    ``unmapped(path)`` (see ``Server._mapping`` in the module docstring).
    """

    def __init__(
        self,
        handlers: Any,
        *,
        on_call_done: CallDone | None = None,
        unmapped: Callable[[str], MethodHandler] | None = None,
        **options: Any,
    ) -> None:
        """Like grpclib's ``Server``; ``on_call_done`` is told of each call's end."""
        super().__init__(handlers, **options)
        self._on_call_done = on_call_done
        if unmapped is not None:
            mapping = vars(self).get("_mapping")
            if not isinstance(mapping, dict):
                raise GrpclibSurfaceChanged("Server._mapping", "does not hold the handlers by path")
            self._mapping = _AnsweringMapping(mapping, unmapped)

    def wrap_protocol(self, protocol: H2Protocol) -> H2Protocol:
        """The protocol a new connection uses (override; the default keeps grpclib's)."""
        return protocol

    def _protocol_factory(self) -> H2Protocol:
        protocol = super()._protocol_factory()
        protocol.handler = _ReleasingHandler(cast("Handler", protocol.handler), self._on_call_done)
        return self.wrap_protocol(protocol)


class ProtocolWrappingChannel(Channel):
    """A grpclib ``Channel`` whose connection's protocol goes through :meth:`wrap_protocol`."""

    def wrap_protocol(self, protocol: H2Protocol) -> H2Protocol:
        """The protocol a new connection uses (override; the default keeps grpclib's)."""
        return protocol

    def _protocol_factory(self) -> H2Protocol:
        return self.wrap_protocol(super()._protocol_factory())


def channel_protocol(channel: Channel) -> H2Protocol | None:
    """The connection ``channel``'s next call goes down, if it has one (``None`` once closed)."""
    protocol: H2Protocol | None = getattr(channel, "_protocol", None)
    return protocol


def forget_channel_protocol(channel: Channel, protocol: object) -> bool:
    """Make ``channel`` connect anew for its next call if it still uses ``protocol``.

    Returns:
        Whether it was still in use (and is now forgotten).
    """
    if getattr(channel, "_protocol", None) is protocol:
        channel._protocol = None
        return True
    return False


def server_listener(server: Server) -> asyncio.Server | None:
    """The listening server under ``server``; ``None`` before ``start``.

    Under uvloop it is a ``uvloop.loop.Server``, which has the methods of
    ``asyncio.Server`` (``sockets``, ``close``) without subclassing it.
    """
    listener = cast("asyncio.Server | None", server._server)
    return listener


def peer_transport(peer: Peer) -> asyncio.BaseTransport:
    """The transport of the connection ``peer`` describes."""
    transport: asyncio.BaseTransport = peer._transport
    return transport


def call_stream_id(stream: ServerStream[Any, Any]) -> int:
    """The HTTP/2 stream id of a server call (a server's streams have theirs when received)."""
    stream_id = stream._stream.id
    assert stream_id is not None
    return stream_id


def h2_connection(protocol: H2Protocol) -> H2Connection:
    """The h2 state machine of ``protocol``'s connection (once ``connection_made`` ran)."""
    connection: H2Connection = protocol.connection._connection
    return connection


def verify() -> None:
    """Check the class-level private items against the installed grpclib.

    Raises:
        GrpclibSurfaceChanged: One is missing or has changed shape.
    """
    for owner in (Server, Channel):
        factory = owner.__dict__.get("_protocol_factory")
        if factory is None:
            raise GrpclibSurfaceChanged(f"{owner.__name__}._protocol_factory", "is gone")
        if list(inspect.signature(factory).parameters) != ["self"]:
            raise GrpclibSurfaceChanged(
                f"{owner.__name__}._protocol_factory", "takes more than self now"
            )
    for name in ("handler", "config", "h2_config"):
        if name not in inspect.signature(H2Protocol.__init__).parameters:
            raise GrpclibSurfaceChanged(f"H2Protocol.__init__({name})", "is gone")
    for method, parameters in (
        (Handler.accept, ["self", "stream", "headers", "release_stream"]),
        (Handler.cancel, ["self", "stream"]),
    ):
        if list(inspect.signature(method).parameters) != parameters:
            raise GrpclibSurfaceChanged(
                f"grpclib.server.Handler.{method.__name__}", f"no longer takes {parameters}"
            )
    if "stream" not in inspect.signature(ServerStream.__init__).parameters:
        raise GrpclibSurfaceChanged("grpclib.server.Stream.__init__(stream)", "is gone")
    if "connection" not in inspect.signature(Connection.__init__).parameters:
        raise GrpclibSurfaceChanged("grpclib.protocol.Connection.__init__(connection)", "is gone")
    processor_methods: dict[str, list[str]] = {
        "__init__": ["self", "handler", "connection"],
        "register": ["self", "stream"],
        "process_connection_terminated": ["self", "event"],
        "close": ["self", "reason"],
    }
    for name, parameters in processor_methods.items():
        if list(inspect.signature(getattr(EventsProcessor, name)).parameters) != parameters:
            raise GrpclibSurfaceChanged(
                f"grpclib.protocol.EventsProcessor.{name}", f"no longer takes {parameters}"
            )
    if "wrapper" not in inspect.signature(Stream.__init__).parameters:
        raise GrpclibSurfaceChanged("grpclib.protocol.Stream.__init__(wrapper)", "is gone")
    if AbstractHandler.__abstractmethods__ != {"accept", "cancel", "close"}:
        raise GrpclibSurfaceChanged(
            "grpclib.protocol.AbstractHandler",
            "has other abstract methods than accept, cancel, close",
        )


def verify_live(*, channel: Channel, server: Server, peer: Peer) -> None:
    """Check the instance-level private items on a started server, an open channel, a peer.

    ``peer`` is the server side's peer of a call on ``server``: its
    connection's handler must be the releasing one.

    Raises:
        GrpclibSurfaceChanged: One is missing or holds something else.
    """
    protocol = vars(channel).get("_protocol")
    if not isinstance(protocol, H2Protocol):
        raise GrpclibSurfaceChanged(
            "Channel._protocol", "does not hold the H2Protocol of a connected channel"
        )
    _verify_h2_connection(protocol)
    listener = vars(server).get("_server")
    if not (hasattr(listener, "sockets") and hasattr(listener, "close")):
        raise GrpclibSurfaceChanged(
            "Server._server", "does not hold the asyncio server of a started server"
        )
    transport: Any = vars(peer).get("_transport")
    if not hasattr(transport, "get_extra_info"):
        raise GrpclibSurfaceChanged("Peer._transport", "does not hold the call's transport")
    server_protocol = transport.get_protocol()
    if isinstance(server_protocol, H2Protocol):
        _verify_h2_connection(server_protocol)
    if isinstance(server, ProtocolWrappingServer):
        handler = getattr(server_protocol, "handler", None)
        if not isinstance(handler, _ReleasingHandler):
            raise GrpclibSurfaceChanged(
                "H2Protocol.handler", "does not hold what receives the connection's calls"
            )
        if not isinstance(vars(handler.handler).get("_tasks"), dict):
            raise GrpclibSurfaceChanged(
                "grpclib.server.Handler._tasks", "does not hold the handler tasks by stream"
            )


def _verify_h2_connection(protocol: H2Protocol) -> None:
    connection = getattr(protocol, "connection", None)
    if not isinstance(getattr(connection, "__dict__", {}).get("_connection"), H2Connection):
        raise GrpclibSurfaceChanged(
            "grpclib.protocol.Connection._connection",
            "does not hold the connection's h2 H2Connection",
        )


verify()
