"""Everything bugless_core does with grpclib's private surface, in one place.

grpclib is pinned below 0.5 because of these; nothing public offers them:

* ``grpclib._typing.IServable``, the type of a servable (re-exported here);
* ``Server._protocol_factory`` and ``Channel._protocol_factory``, the hook
  that builds a connection's HTTP/2 protocol (the corked transport wraps it:
  :class:`ProtocolWrappingServer`, :class:`ProtocolWrappingChannel`);
* ``Channel._protocol``, the connection a channel's next call uses (a
  frontend forgets it after a draining server refused a call);
* ``Server._server``, the listening ``asyncio.Server`` (a drain closes only
  the listening sockets, which ``Server.close`` cannot do without also
  cancelling every running call);
* ``Peer._transport``, the transport of a call's connection (the peer
  certificate in DER form needs its SSL object).

:func:`verify` checks the class-level items on import and raises
:class:`GrpclibSurfaceChanged` naming the attribute and the installed
version; :func:`verify_live` checks the instance-level ones, which
``tests/test_compat.py`` runs on a real server, channel and call.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
from typing import cast

from grpclib._typing import IServable
from grpclib.client import Channel
from grpclib.protocol import H2Protocol, Peer
from grpclib.server import Server

__all__ = [
    "GRPCLIB_VERSION",
    "GrpclibSurfaceChanged",
    "IServable",
    "ProtocolWrappingChannel",
    "ProtocolWrappingServer",
    "channel_protocol",
    "forget_channel_protocol",
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


class ProtocolWrappingServer(Server):
    """A grpclib ``Server`` whose connections' protocol goes through :meth:`wrap_protocol`."""

    def wrap_protocol(self, protocol: H2Protocol) -> H2Protocol:
        """The protocol a new connection uses (override; the default keeps grpclib's)."""
        return protocol

    def _protocol_factory(self) -> H2Protocol:
        return self.wrap_protocol(super()._protocol_factory())


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


def verify_live(*, channel: Channel, server: Server, peer: Peer) -> None:
    """Check the instance-level private items on a started server, an open channel, a peer.

    Raises:
        GrpclibSurfaceChanged: One is missing or holds something else.
    """
    if not isinstance(vars(channel).get("_protocol"), H2Protocol):
        raise GrpclibSurfaceChanged(
            "Channel._protocol", "does not hold the H2Protocol of a connected channel"
        )
    listener = vars(server).get("_server")
    if not (hasattr(listener, "sockets") and hasattr(listener, "close")):
        raise GrpclibSurfaceChanged(
            "Server._server", "does not hold the asyncio server of a started server"
        )
    if not hasattr(vars(peer).get("_transport"), "get_extra_info"):
        raise GrpclibSurfaceChanged("Peer._transport", "does not hold the call's transport")


verify()
