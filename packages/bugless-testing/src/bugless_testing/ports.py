"""Loopback ports where nothing answers, for tests of a server that is down."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def refused_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A loopback TCP port that refuses connections for as long as the block runs.

    A test of "the LDAP directory / OIDC provider / Model is down" needs an
    address where a connection is refused at once. A port that was merely
    free a moment ago can be taken by another process on this shared machine
    before the test connects (the test would then talk to a stranger). So the
    port stays bound to a socket that never listens: on Linux a connection to
    it is answered with a reset (``ECONNREFUSED``), and no other socket can
    bind it (this one does not set ``SO_REUSEADDR``, so not even a server that
    does set it may share the port).

    For a server a test starts itself, bind port 0 and read the port back, or
    hold the port with :func:`bugless_dev.processes.reserve_port` when it must
    be named before the server starts.

    Args:
        host: The loopback address to hold the port on: ``::1`` for a test of
            how an IPv6 address is shown (``[::1]:port``).

    Yields:
        The port number, on ``host``.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        yield port


__all__ = ["refused_port"]
