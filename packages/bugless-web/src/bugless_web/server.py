"""Serving the app with uvicorn, with a drain phase before shutdown.

uvicorn alone stops accepting connections the moment SIGTERM arrives; a
Kubernetes rollout wants more: first fail readiness while the endpoint is
removed from the Service (and steer page loads elsewhere), then stop
accepting, then let in-flight requests finish. This module installs its own
signal handlers to do exactly that.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from types import FrameType

import uvicorn

from bugless_web.app import create_app
from bugless_web.frontend import Frontend
from bugless_web.settings import WebSettings

_log = logging.getLogger("bugless.web")


class DrainingServer(uvicorn.Server):
    """A uvicorn server whose SIGTERM starts a drain instead of an exit."""

    def __init__(self, config: uvicorn.Config, frontend: Frontend, drain_seconds: float) -> None:
        super().__init__(config)
        self._frontend = frontend
        self._drain_seconds = drain_seconds
        self._timer: threading.Timer | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """SIGTERM/SIGINT: drain, then exit gracefully; a second signal exits now.

        uvicorn calls this from its signal handler. Stopping is a flag its
        main loop polls, so a timer thread may set it after the drain period.
        """
        name = signal.Signals(sig).name
        if self._timer is not None:
            _log.warning("second %s: exiting now", name)
            self.force_exit = True
            self.should_exit = True
            return
        _log.info(
            "%s: draining for %.1fs, then finishing in-flight requests", name, self._drain_seconds
        )
        self._frontend.drain.start(name)
        self._timer = threading.Timer(self._drain_seconds, self._stop_accepting)
        self._timer.daemon = True
        self._timer.start()

    def _stop_accepting(self) -> None:
        self.should_exit = True


def serve(settings: WebSettings) -> None:
    """Run one replica until SIGTERM (then drain) or SIGINT."""
    app = create_app(settings)
    frontend: Frontend = app.state["frontend"]
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        proxy_headers=True,
        forwarded_allow_ips="*" if not settings.dev else "127.0.0.1",
        timeout_graceful_shutdown=int(settings.grace_seconds),
        log_config=None,
        server_header=False,
        # uvloop and httptools: the C event loop every bugless process runs on
        # (bugless_core.eventloop) and the C HTTP/1.1 parser.
        loop="uvloop",
        http="httptools",
    )
    server = DrainingServer(config, frontend, settings.drain_seconds)
    sockets = [_reuse_port_socket(settings.host, settings.port)] if settings.reuse_port else None
    server.run(sockets=sockets)


def _reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening socket that other processes may bind too (``SO_REUSEPORT``).

    uvicorn has no such option of its own; it serves sockets it is given.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock
