"""Serve a Roundup tracker on a free loopback port: ``python roundup_server.py HOME``.

Binds port 0 first, writes the port it got into the tracker's ``[tracker] web``
(Roundup's CSRF checks compare the Origin with it), then serves Roundup's own
WSGI application (``roundup.cgi.wsgi_handler.RequestDispatcher``) and prints
the port on standard output: the test reads it back, so no port is guessed.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from roundup.cgi.wsgi_handler import RequestDispatcher


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not logged (the test output stays readable)."""


def main(home: Path) -> None:
    """Serve ``home`` until killed."""
    server = make_server("127.0.0.1", 0, lambda _e, _s: [], handler_class=_Quiet)
    config = home / "config.ini"
    web = f"web = http://127.0.0.1:{server.server_port}/"
    config.write_text(re.sub(r"(?m)^web = .*$", web, config.read_text(encoding="utf-8")))
    server.set_app(RequestDispatcher(str(home)))
    print(server.server_port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
