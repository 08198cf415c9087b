"""``refused_port``: a port where a connection is refused and nobody else may listen."""

from __future__ import annotations

import errno
import socket

import pytest

from bugless_testing.ports import refused_port


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_a_connection_is_refused_at_once(host: str) -> None:
    with refused_port(host) as port, pytest.raises(ConnectionRefusedError) as refused:
        socket.create_connection((host, port)).close()
    assert refused.value.errno == errno.ECONNREFUSED


@pytest.mark.parametrize("reuse_address", [False, True])
def test_no_other_socket_can_take_the_port(reuse_address: bool) -> None:
    with refused_port() as port, socket.socket() as other:
        if reuse_address:  # what asyncio's create_server and uvicorn set
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with pytest.raises(OSError, match="Address already in use") as taken:
            other.bind(("127.0.0.1", port))
    assert taken.value.errno == errno.EADDRINUSE
