"""A real HTTP server on loopback that receives webhook POSTs and checks their signatures.

The frontends' tests (the API's ``Webhooks`` service, the web's webhooks
page) add an endpoint pointing here and wait for the notifier, a real
process, to POST a change to it::

    with WebhookReceiver(secret) as receiver:
        ...  # add an endpoint for f"{receiver.url}/hook" with ``secret``
        got = await receiver.wait_for(lambda received: len(received) >= 1)
        assert got[0].signed

The signature is checked the way a third-party receiver checks it, from the
documented header (``X-Bugless-Signature: sha256=<hex HMAC-SHA256 of the
body, keyed with the endpoint's secret>``), not with the notifier's own
``verify_signature``: a change to the sender's signing that its own check
shared would still fail here, and this package does not depend on the
notifier. The server binds port 0 (no race for a free port) and runs on its own
threads, so a test's busy event loop never delays an answer.

It answers every POST ``204`` (or the ``status`` it was made with) unless a
test scripted otherwise, per path: the notifier's own tests make a receiver
fail, throttle or hang and watch it retry::

    receiver.script("/flaky", 503, 429)  # then the usual answer again
    receiver.retry_after["/flaky"] = "120"  # sent with the non-2xx answers
    receiver.delays["/slow"] = 3.0  # seconds before answering (and recording)
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

#: The header carrying the body's signature (``sha256=<hex>``).
SIGNATURE_HEADER = "X-Bugless-Signature"
#: Where a scripted 3xx answer points: another host, which a sender must not follow.
REDIRECT_LOCATION = "https://elsewhere.example.com/hook?token=x"
#: The answer to a POST nothing was scripted for, unless the receiver was told another.
DEFAULT_STATUS = 204


@dataclass(frozen=True)
class ReceivedWebhook:
    """One POST as the receiver got it.

    Attributes:
        path: The request path (with its query), e.g. ``/hook/path-secret``.
        headers: The request headers, names in lower case.
        raw: The body's bytes.
        body: The body parsed as JSON (None when it is not JSON).
        signed: Whether the signature header is the HMAC of ``raw`` with the
            receiver's secret.
        status: The HTTP status the receiver answered.
    """

    path: str
    headers: dict[str, str]
    raw: bytes
    body: Any
    signed: bool
    status: int


def signature_matches(secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is ``sha256=`` and the hex HMAC-SHA256 of ``body`` under ``secret``."""
    if header is None:
        return False
    expected = "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


class WebhookReceiver:
    """An HTTP server that keeps every POST it receives, signature checked.

    Attributes:
        secret: The key the endpoints pointing here sign with.
        url: ``http://127.0.0.1:PORT`` (``https://`` with ``tls``), the base
            of the endpoints' URLs.
        port: The port it listens on.
        delays: Path -> seconds to wait before answering a POST to it (the
            POST is recorded once answered).
        retry_after: Path -> the ``Retry-After`` header sent with every
            non-2xx answer to it.
    """

    def __init__(
        self, secret: str, *, status: int = DEFAULT_STATUS, tls: ssl.SSLContext | None = None
    ) -> None:
        """Start serving on a free loopback port; :meth:`close` (or ``with``) stops it.

        Args:
            secret: The key the endpoints pointing here sign with.
            status: The answer to every POST no script covers.
            tls: Serve HTTPS with this server context (its certificate).
        """
        self.secret = secret
        self._status = status
        self.delays: dict[str, float] = {}
        self.retry_after: dict[str, str] = {}
        self._scripts: dict[str, list[int]] = {}
        self._received: list[ReceivedWebhook] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a sender's pooled client expects

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", "0")))
                delay = receiver.delays.get(self.path)
                if delay:
                    time.sleep(delay)
                status = receiver._answer(self.path)
                receiver._record(self.path, dict(self.headers.items()), raw, status)
                self.send_response(status)
                if status >= 300 and self.path in receiver.retry_after:
                    self.send_header("retry-after", receiver.retry_after[self.path])
                if 300 <= status < 400:
                    self.send_header("location", REDIRECT_LOCATION)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the tests read :attr:`WebhookReceiver.received` instead."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.port: int = self._server.server_address[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="webhook-receiver", daemon=True
        )
        self._thread.start()

    def script(self, path: str, *statuses: int) -> None:
        """Answer the next POSTs to ``path`` with ``statuses`` in order, then as usual."""
        with self._lock:
            self._scripts[path] = list(statuses)

    def _answer(self, path: str) -> int:
        with self._lock:
            script = self._scripts.get(path)
            return script.pop(0) if script else self._status

    def _record(self, path: str, headers: dict[str, str], raw: bytes, status: int) -> None:
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        lowered = {name.lower(): value for name, value in headers.items()}
        signed = signature_matches(self.secret, raw, lowered.get(SIGNATURE_HEADER.lower()))
        with self._lock:
            self._received.append(ReceivedWebhook(path, lowered, raw, body, signed, status))

    @property
    def received(self) -> list[ReceivedWebhook]:
        """Every POST received so far, oldest first (a copy)."""
        with self._lock:
            return list(self._received)

    async def wait_for(
        self, condition: Callable[[list[ReceivedWebhook]], bool], *, within_seconds: float = 90.0
    ) -> list[ReceivedWebhook]:
        """Wait, without blocking the event loop, until ``condition(received)`` holds.

        ``within_seconds`` only bounds a test that would otherwise hang:
        deliveries go through the notifier's queue, which on a busy machine
        takes seconds.

        Returns:
            What was received when the condition held.

        Raises:
            AssertionError: ``within_seconds`` passed first (the message
                lists what was received).
        """
        deadline = time.monotonic() + within_seconds
        while True:
            received = self.received
            if condition(received):
                return received
            if time.monotonic() > deadline:
                raise AssertionError(f"webhook POSTs received so far: {received}")
            await asyncio.sleep(0.2)

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
