"""Loopback ports for servers the test fixtures and benchmarks start."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now.

    The port is released before it is returned, so another process could take
    it first; the fixtures start their servers right away and fail loudly if
    the bind is refused.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
