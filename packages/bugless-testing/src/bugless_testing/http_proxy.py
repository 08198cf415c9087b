"""A real forward HTTP proxy on loopback that counts what goes through it.

Tests of what a client does with ``HTTP(S)_PROXY`` (honour it, or not) point
the variable, or a setting, here and read :attr:`HttpProxy.requests`::

    with HttpProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        ...  # the client under test sends
        assert proxy.requests == []  # it did not go through the proxy

Both kinds of proxied request are served, as a real proxy serves them: a
request in absolute form (``POST http://host:port/path``, an ``http://`` URL)
is forwarded to its origin and the answer relayed; ``CONNECT host:port`` (an
``https://`` URL) opens a tunnel. Each is recorded, method and target, before
it is forwarded. One connection carries one request (the proxy answers with
``Connection: close``); it binds port 0 and runs on its own threads.
"""

from __future__ import annotations

import contextlib
import select
import socket
import socketserver
import threading
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        head = self.rfile.readline(65536).decode("latin-1")
        method, _, rest = head.partition(" ")
        target = rest.rpartition(" ")[0]
        headers: list[str] = []
        while (line := self.rfile.readline(65536).decode("latin-1")) not in {"\r\n", "\n", ""}:
            headers.append(line)
        self.server.record(method, target)
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            self._tunnel(host, int(port))
        else:
            self._forward(method, target, headers)

    def _tunnel(self, host: str, port: int) -> None:
        try:
            upstream = socket.create_connection((host, port), timeout=10)
        except OSError:
            self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.wfile.flush()
        with upstream:
            _pipe(self.connection, upstream)

    def _forward(self, method: str, target: str, headers: list[str]) -> None:
        url = urlsplit(target)
        length = 0
        kept: list[str] = []
        for line in headers:
            name = line.partition(":")[0].strip().lower()
            if name == "content-length":
                length = int(line.partition(":")[2])
            if name not in {"connection", "proxy-connection", "keep-alive"}:
                kept.append(line)
        body = self.rfile.read(length) if length else b""
        path = url.path or "/"
        if url.query:
            path += f"?{url.query}"
        request = f"{method} {path} HTTP/1.1\r\n{''.join(kept)}Connection: close\r\n\r\n"
        try:
            upstream = socket.create_connection((url.hostname or "", url.port or 80), timeout=10)
        except OSError:
            self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        with upstream:
            upstream.sendall(request.encode("latin-1") + body)
            while chunk := upstream.recv(65536):
                self.wfile.write(chunk)


def _pipe(one: socket.socket, other: socket.socket) -> None:
    """Copy both ways until either side closes."""
    sockets = [one, other]
    while True:
        readable, _, _ = select.select(sockets, [], [], 10)
        if not readable:
            return
        for sock in readable:
            data = sock.recv(65536)
            if not data:
                return
            (other if sock is one else one).sendall(data)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []

    def record(self, method: str, target: str) -> None:
        with self.lock:
            self.requests.append((method, target))


class HttpProxy:
    """The proxy (see the module); a context manager, or :meth:`close` when done.

    Attributes:
        url: ``http://127.0.0.1:<port>``, for ``HTTPS_PROXY`` or a setting.
    """

    def __init__(self) -> None:
        """Start serving on a free loopback port."""
        self._server = _Server()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="http-proxy", daemon=True
        )
        self._thread.start()

    @property
    def requests(self) -> list[tuple[str, str]]:
        """Every request that came through, as ``(method, target)``, in order."""
        with self._server.lock:
            return list(self._server.requests)

    def close(self) -> None:
        """Stop serving and close the listening socket."""
        with contextlib.suppress(OSError):
            self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
