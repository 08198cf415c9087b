"""Serve a Roundup tracker on a free loopback port: ``python roundup_server.py HOME``.

Binds port 0 first, writes the port it got into the tracker's ``[tracker] web``
(Roundup's CSRF checks compare the Origin with it), then serves Roundup's own
WSGI application (``roundup.cgi.wsgi_handler.RequestDispatcher``) and prints
the port on standard output: the test reads it back, so no port is guessed.
With ``ROUNDUP_BREAK_FILES=N`` in its environment, the first N answers for a
file's ``binary_content`` carry their whole ``Content-Length`` and half the
bytes, then the connection closes: a connection dropped mid-body.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from roundup.cgi.wsgi_handler import RequestDispatcher


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not logged (the test output stays readable)."""


def _breaking(app: Any, count: int) -> Callable[..., Iterable[bytes]]:
    """``app`` whose first ``count`` file contents break off halfway."""
    left = [count]

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not environ.get("PATH_INFO", "").endswith("/binary_content") or left[0] <= 0:
            return app(environ, start_response)  # type: ignore[no-any-return]
        left[0] -= 1
        answer: list[Any] = []
        written: list[bytes] = []

        def held(status: str, headers: list[tuple[str, str]], *_: Any) -> Callable[[bytes], Any]:
            answer.extend([status, headers])
            return written.append  # Roundup writes its body through this

        returned = list(app(environ, held))
        body = b"".join([*written, *returned])
        status, headers = answer
        kept = [(k, v) for k, v in headers if k.lower() != "content-length"]
        start_response(status, [*kept, ("Content-Length", str(len(body)))])
        return [body[: len(body) // 2]]  # HTTP/1.0: the server closes the connection

    return wrapped


def main(home: Path) -> None:
    """Serve ``home`` until killed."""
    server = make_server("127.0.0.1", 0, lambda _e, _s: [], handler_class=_Quiet)
    config = home / "config.ini"
    web = f"web = http://127.0.0.1:{server.server_port}/"
    config.write_text(re.sub(r"(?m)^web = .*$", web, config.read_text(encoding="utf-8")))
    app: Any = RequestDispatcher(str(home))
    breaking = int(os.environ.get("ROUNDUP_BREAK_FILES", "0"))
    server.set_app(_breaking(app, breaking) if breaking else app)
    print(server.server_port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
