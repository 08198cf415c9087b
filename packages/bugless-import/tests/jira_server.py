"""A loopback Jira that serves attachment content, as ``/secure/attachment/ID/NAME`` does.

It answers as Jira Data Center does for a personal access token: the
``Authorization: Bearer TOKEN`` header or 401; the bytes of the tree's
``ID/NAME``, streamed from disk with their ``Content-Length``, or 404, at
``/secure/attachment/ID/NAME``; and as Jira Cloud does, a 303 from
``/rest/api/2/attachment/content/ID`` to its media store (``/media/ID/NAME``
here, which wants no credential). It
logs every path (``requests``), counts the downloads in flight at once
(``most_in_flight``), and with ``hold`` = N keeps each of the first N
downloads waiting (up to ``hold_seconds``) until N are in flight, so that a test sees whether
the importer asks for several files at once without timing anything.
With ``break_off`` = N, the first N downloads send their ``Content-Length``
and half the bytes, then close the connection (``broken`` counts them).
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit


@dataclass
class Jira:
    """What the server serves; what it saw."""

    root: Path
    token: str
    hold: int = 0
    hold_seconds: float = 5.0
    requests: list[str] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)
    url: str = ""
    in_flight: int = 0
    most_in_flight: int = 0
    started: int = 0
    break_off: int = 0
    broken: int = 0
    changed: threading.Condition = field(default_factory=threading.Condition)


def _handler(jira: Jira) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the test output is not a web server's log."""

        def _empty(self, code: int) -> None:
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            jira.requests.append(self.path)
            jira.authorizations.append(self.headers.get("Authorization") or "")
            media = self.path.startswith("/media/")
            if not media and self.headers.get("Authorization") != f"Bearer {jira.token}":
                self._empty(401)
                return
            path = urlsplit(self.path).path
            if path.startswith("/media/"):
                # Jira Cloud's media store: a signed URL, no credential wanted.
                path = "/secure/attachment/" + path.removeprefix("/media/")
            elif path.startswith("/rest/api/2/attachment/content/"):
                number = path.removeprefix("/rest/api/2/attachment/content/")
                found = sorted((jira.root / number).glob("*")) if number.isdigit() else []
                if not found:
                    self._empty(404)
                    return
                self.send_response(303)
                self.send_header("Location", f"{jira.url}media/{number}/{found[0].name}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            number, _, name = path.removeprefix("/secure/attachment/").partition("/")
            file = jira.root / number / unquote(name)
            if not path.startswith("/secure/attachment/") or not file.is_file():
                self._empty(404)
                return
            with jira.changed:
                jira.in_flight += 1
                jira.started += 1
                jira.most_in_flight = max(jira.most_in_flight, jira.in_flight)
                jira.changed.notify_all()
                if jira.started <= jira.hold:
                    jira.changed.wait_for(lambda: jira.in_flight >= jira.hold, jira.hold_seconds)
                breaking = jira.broken < jira.break_off
                jira.broken += breaking
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(file.stat().st_size))
                self.end_headers()
                if breaking:  # the connection drops mid-body
                    self.wfile.write(file.read_bytes()[: file.stat().st_size // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                with file.open("rb") as content:
                    shutil.copyfileobj(content, self.wfile)
            finally:
                with jira.changed:
                    jira.in_flight -= 1

    return Handler


@contextmanager
def serve(jira: Jira) -> Iterator[Jira]:
    """Serve ``jira`` on a loopback port of the server's choosing, in a thread."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(jira))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    jira.url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        yield jira
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
