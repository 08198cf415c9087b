"""Who is calling: the connection, certificate and metadata of the current call.

betterproto2 handlers receive only the request message, never the grpclib
stream, so the server stores what a handler may need to know about the caller
in a context variable when the request arrives (see ``_calls``). Every call
runs in its own asyncio task, so the value is private to the call and is gone
when the call ends; code outside a call sees ``None`` or an empty mapping,
which reads as "anonymous" and therefore fails closed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
import weakref
from collections.abc import Mapping
from contextvars import ContextVar

from grpclib.const import Status
from grpclib.protocol import H2Protocol, Peer
from multidict import MultiDict, MultiDictProxy, MultiMapping

from bugless_core._compat.grpclib import peer_transport
from bugless_core.grpc._access import service_identity
from bugless_core.grpc._goaway import (
    honours_graceful_goaway,
    stream_ids_received,
    write_graceful_goaway,
)

# Never reused within a process, unlike id(): a cache keyed by it cannot hand one
# client's identity to the next connection that happens to reuse an address.
_CONNECTION_IDS = itertools.count(1)

_NO_METADATA: MultiDictProxy[str | bytes] = MultiDictProxy(MultiDict())


@dataclasses.dataclass(frozen=True, eq=False)
class PeerConnection:
    """The client connection a call arrived on.

    Every call made on one connection sees the *same* object, which compares
    and hashes by identity and can be weakly referenced: it is the key for
    anything cached per connection (such as the identity the Authenticator
    derives from a client certificate), and the cache entry goes away with the
    connection when it is held in a ``weakref.WeakKeyDictionary``.

    Attributes:
        id: Process-unique number of the connection, for logs; never reused.
        address: The client's ``(host, port)``, when the socket knows it.
        certificate: The client certificate in DER form, present only on
            mutual TLS, where the handshake has already verified it against
            ``client_ca``; ``None`` on plaintext or server-only TLS.
        certificate_fields: The same certificate decoded by
            ``ssl.SSLSocket.getpeercert()`` (``subject``, ``issuer``,
            ``subjectAltName``, ``notAfter``, ...), for callers that need a
            name from it without an X.509 library.
        identity: The bugless service the certificate names
            (``spiffe://bugless/<identity>``), ``None`` for a bot's or no
            certificate.
        user_agent: The ``user-agent`` of the first call on it, if it sent one.
    """

    id: int
    address: tuple[str, int] | None
    certificate: bytes | None
    certificate_fields: Mapping[str, object] | None
    identity: str | None = None
    user_agent: str | None = None


class ConnectionRegistry:
    """Maps live transports to their :class:`PeerConnection`, for one server.

    grpclib builds a new ``Peer`` for every call, so the registry is what makes
    the per-connection object stable. It also knows every connection the
    server accepted (:meth:`accepted`), whether a call came on it yet or not,
    so that a draining server treats them all alike: it keeps each one open,
    refusing new calls, for as long as it lingers (:meth:`open_count`), and
    closes each one when it shuts down (:meth:`close_all`). A connection
    accepted just before the stop, whose first call was still on its way,
    would otherwise be closed under that call.

    When the server stops accepting (:meth:`stop`), the calls each connection
    had opened by then are still answered (:meth:`arrived_before_stop`), and a
    client known to honour a graceful GOAWAY is sent one naming the last of
    them (:mod:`bugless_core.grpc._goaway`), at once or at its first call
    after the stop, when that tells who it is.
    """

    def __init__(self) -> None:
        self._by_transport: weakref.WeakKeyDictionary[asyncio.BaseTransport, PeerConnection] = (
            weakref.WeakKeyDictionary()
        )
        self._accepted: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()
        #: From the stop: the last stream id each connection had opened before it.
        self._last_before_stop: weakref.WeakKeyDictionary[asyncio.BaseTransport, int] | None = None
        self._gone_away: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()

    def accepted(self, transport: asyncio.BaseTransport) -> None:
        """Note a connection the server accepted (the transport its calls' peers will hold)."""
        self._accepted.add(transport)

    def connection_of(self, peer: Peer, user_agent: str | None = None) -> PeerConnection:
        """Return the connection ``peer`` belongs to, describing it on first sight.

        ``user_agent`` is the call's; the first call's is kept.
        """
        # grpclib's Peer exposes the certificate only as getpeercert()'s dict;
        # the DER bytes need the SSL object, reachable through its transport.
        transport = peer_transport(peer)
        connection = self._by_transport.get(transport)
        if connection is None:
            ssl_object = transport.get_extra_info("ssl_object")
            certificate = None if ssl_object is None else ssl_object.getpeercert(binary_form=True)
            fields = None if certificate is None else ssl_object.getpeercert()
            address = peer.addr()
            connection = PeerConnection(
                id=next(_CONNECTION_IDS),
                address=(str(address[0]), int(address[1])) if address else None,
                certificate=certificate,
                certificate_fields=fields,
                identity=service_identity(fields),
                user_agent=user_agent,
            )
            self._by_transport[transport] = connection
        return connection

    def stop(self) -> int:
        """Note where each open connection's calls end; send GOAWAY where it is honoured.

        Returns:
            How many connections were sent a GOAWAY now.
        """
        if self._last_before_stop is not None:
            return 0
        self._last_before_stop = weakref.WeakKeyDictionary()
        sent = 0
        for transport in self._known():
            protocol = transport.get_protocol()
            if transport.is_closing() or not isinstance(protocol, H2Protocol):
                continue
            self._last_before_stop[transport] = stream_ids_received(protocol)
            sent += self._go_away_if_honoured(transport, protocol)
        return sent

    def arrived_before_stop(self, peer: Peer, stream_id: int) -> bool:
        """Whether the call on ``stream_id`` was opened before :meth:`stop` (so it is answered).

        A later call is refused; its connection's client, known from the call
        now, is sent a GOAWAY if it honours one and was not sent one at the stop.
        """
        transport = peer_transport(peer)
        last = 0 if self._last_before_stop is None else self._last_before_stop.get(transport, 0)
        if stream_id <= last:
            return True
        protocol = transport.get_protocol()
        if self._last_before_stop is not None and isinstance(protocol, H2Protocol):
            self._last_before_stop.setdefault(transport, last)
            self._go_away_if_honoured(transport, protocol)
        return False

    def _go_away_if_honoured(self, transport: asyncio.BaseTransport, protocol: H2Protocol) -> int:
        if transport in self._gone_away or self._last_before_stop is None:
            return 0
        connection = self._by_transport.get(transport)
        user_agent = None if connection is None else connection.user_agent
        if not honours_graceful_goaway(protocol, user_agent):
            return 0
        write_graceful_goaway(protocol, transport, self._last_before_stop.get(transport, 0))
        self._gone_away.add(transport)
        return 1

    def _known(self) -> set[asyncio.BaseTransport]:
        return {*self._accepted, *self._by_transport}

    def open_count(self) -> int:
        """How many known connections are still open (neither side has closed them)."""
        return sum(1 for transport in self._known() if not transport.is_closing())

    def close_all(self) -> int:
        """Close every known connection still open; return how many were closed."""
        closed = 0
        for transport in self._known():
            if not transport.is_closing():
                transport.close()
                closed += 1
        return closed


@dataclasses.dataclass
class CallContext:
    """What the server knows about one call while it runs.

    Attributes:
        method_name: ``/package.Service/Method``.
        connection: The connection the call arrived on.
        metadata: Invocation metadata sent by the client.
        started: ``time.perf_counter()`` when the request headers arrived.
        status: Final status, once the trailers are being sent; stays ``None``
            for calls that end without trailers (cancelled, connection lost).
        status_message: Message sent with a non-OK status.
    """

    method_name: str
    connection: PeerConnection
    metadata: MultiDictProxy[str | bytes]
    started: float = dataclasses.field(default_factory=time.perf_counter)
    status: Status | None = None
    status_message: str | None = None


CURRENT_CALL: ContextVar[CallContext | None] = ContextVar("bugless_grpc_call", default=None)


def current_peer() -> PeerConnection | None:
    """Return the connection of the gRPC call being handled, ``None`` outside a call."""
    call = CURRENT_CALL.get()
    return None if call is None else call.connection


def current_peer_certificate() -> bytes | None:
    """Return the verified client certificate (DER) of the current call.

    ``None`` unless the server runs mutual TLS, and outside a call: callers
    treat ``None`` as "not authenticated by certificate".
    """
    call = CURRENT_CALL.get()
    return None if call is None else call.connection.certificate


def current_identity() -> str | None:
    """The service identity of the current call's certificate (``web``, ``api``, ...).

    ``None`` for a bot's certificate, on plaintext, and outside a call. The
    runner has already checked it against the method's ACCESS row; handlers
    read it when one RPC treats callers differently.
    """
    call = CURRENT_CALL.get()
    return None if call is None else call.connection.identity


def current_metadata() -> MultiMapping[str | bytes]:
    """Return the invocation metadata of the current call (read-only).

    Keys are lower-case; ``-bin`` keys carry ``bytes``, the others ``str``.
    Outside a call the mapping is empty.
    """
    call = CURRENT_CALL.get()
    return _NO_METADATA if call is None else call.metadata
