"""A loopback GitHub host serving the files pasted into issue text, as github.com does.

``/user-attachments/assets/ID`` (a private repository's: the token as
``Authorization: Bearer`` or 404) answers 302 to the file's storage,
``/storage/ID``, which refuses a request carrying any ``Authorization`` (as
the signed storage URLs GitHub redirects to do); ``/OWNER/REPO/files/N/NAME``
serves the file at once. Files come from ``files`` (path -> bytes); every
request is logged with the Authorization it carried.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class GitHubHost:
    """What the host serves; what it saw: ``(path, Authorization or "")``."""

    token: str
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    url: str = ""
    #: Called with the path of a ``files`` file before it is served (in the
    #: server's thread): a test acting while the import reads the file.
    before_file: Callable[[str], None] | None = None


def _handler(host: GitHubHost) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the test output is not a web server's log."""

        def _send(self, code: int, body: bytes = b"", location: str = "") -> None:
            self.send_response(code)
            if location:
                self.send_header("Location", location)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            authorization = self.headers.get("Authorization") or ""
            host.requests.append((self.path, authorization))
            if self.path.startswith("/user-attachments/assets/"):
                if authorization != f"Bearer {host.token}":
                    self._send(404)
                    return
                asset = self.path.removeprefix("/user-attachments/assets/")
                self._send(302, location=f"{host.url}storage/{asset}")
            elif self.path.startswith("/storage/"):
                content = host.files.get(self.path)
                if authorization or content is None:
                    self._send(400)  # a signed URL refuses a second credential
                    return
                self._send(200, content)
            elif self.path in host.files:
                if host.before_file is not None:
                    host.before_file(self.path)
                self._send(200, host.files[self.path])
            else:
                self._send(404)

    return Handler


@contextmanager
def serve(host: GitHubHost) -> Iterator[GitHubHost]:
    """Serve ``host`` on a loopback port of the server's choosing, in a thread."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(host))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host.url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        yield host
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
