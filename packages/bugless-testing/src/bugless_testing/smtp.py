"""A real SMTP server on loopback that keeps what it receives (aiosmtpd).

The notifier's tests and benchmark send real mail to it over real SMTP
(STARTTLS, implicit TLS and AUTH included when asked for). It runs on its own
thread and event loop, so it serves sync and async tests alike and a test's
event loop being busy never slows it down. Enable the fixture with::

    pytest_plugins = ["bugless_testing.smtp"]

or start one yourself: ``with SmtpSink() as sink: ... sink.port``.
``python -m bugless_testing.smtp`` runs one as a process (for the
benchmark, so it does not share a core's worth of GIL with the sender) and
prints ``listening on 127.0.0.1:PORT`` (``--host ::1``: ``listening on [::1]:PORT``).

It can be told to refuse a recipient for good (``refusals``: a 5xx answer),
to defer one a number of times (``deferrals``: 451 and then accept), and to
take a while before answering DATA (``data_delay_seconds``: a slow relay, so a
test can kill a sender while mails are in flight). It counts the sessions
(connections) it opened and closed, so a test can wait until the sink has
really dropped an idle session (``session_timeout_seconds``) instead of
sleeping past the timeout and hoping the sink's thread ran by then.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, cast

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from bugless_core.service_address import host_port


@dataclass(frozen=True)
class ReceivedMail:
    """One accepted mail.

    Attributes:
        sender: The envelope sender (``MAIL FROM``).
        recipients: The envelope recipients (``RCPT TO``).
        message: The parsed message (``email.policy.default``).
        raw: The bytes as received.
        secure: Whether the session was TLS (STARTTLS or implicit).
        login: The authenticated login, empty without AUTH.
    """

    sender: str
    recipients: tuple[str, ...]
    message: EmailMessage
    raw: bytes
    secure: bool
    login: str


class _CountedSMTP(SMTP):
    """aiosmtpd's SMTP session, telling the sink when its connection is gone."""

    def __init__(self, sink: SmtpSink, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sink = sink

    def connection_lost(self, error: Exception | None) -> None:
        """Count the session closed (by either side) once aiosmtpd has let it go."""
        super().connection_lost(error)
        self._sink.session_ended()


class _Handler:
    """aiosmtpd hooks: refusals, deferrals, delay, and the collection."""

    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        refusal = self.sink.refusals.get(address)
        if refusal is not None:
            return refusal
        if self.sink.take_deferral(address):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        if self.sink.data_delay_seconds:
            await asyncio.sleep(self.sink.data_delay_seconds)
        raw = cast("bytes", envelope.original_content or envelope.content or b"")
        auth = session.auth_data
        keep = self.sink.keep_messages
        transport = server.transport
        self.sink.add(
            ReceivedMail(
                sender=envelope.mail_from or "",
                recipients=tuple(envelope.rcpt_tos),
                message=email.message_from_bytes(raw, policy=email.policy.default)
                if keep
                else EmailMessage(),
                raw=raw if keep else b"",
                secure=transport is not None and transport.get_extra_info("ssl_object") is not None,
                login=auth.login.decode() if isinstance(auth, LoginPassword) else "",
            )
        )
        return "250 2.0.0 accepted"


@dataclass
class SmtpSink:
    """An SMTP server on ``127.0.0.1`` and a free port, collecting mail.

    Attributes:
        starttls_context: Offer STARTTLS with this server context.
        require_starttls: Refuse mail before STARTTLS.
        implicit_tls_context: Speak TLS from the first byte (SMTPS) instead.
        credentials: login -> password; when set, AUTH (PLAIN/LOGIN) is required.
        refusals: address -> the full answer to its ``RCPT`` (``"550 5.1.1 no
            such user"``).
        deferrals: address -> how many times to answer its ``RCPT`` with 451
            before accepting it.
        data_delay_seconds: Wait this long before answering ``DATA``.
        keep_messages: Parse and keep every mail (off: only count them).
        session_timeout_seconds: Close a session idle this long (as relays do).
    """

    starttls_context: ssl.SSLContext | None = None
    require_starttls: bool = False
    implicit_tls_context: ssl.SSLContext | None = None
    credentials: Mapping[str, str] | None = None
    refusals: dict[str, str] = field(default_factory=dict)
    deferrals: dict[str, int] = field(default_factory=dict)
    data_delay_seconds: float = 0.0
    keep_messages: bool = True
    session_timeout_seconds: float = 300.0
    host: str = "127.0.0.1"
    port: int = 0
    _mails: list[ReceivedMail] = field(default_factory=list)
    _count: int = 0
    _sessions_opened: int = 0
    _sessions_closed: int = 0
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _loop: asyncio.AbstractEventLoop | None = None
    _server: asyncio.AbstractServer | None = None
    _thread: threading.Thread | None = None

    # ---- what arrived ----

    @property
    def mails(self) -> list[ReceivedMail]:
        """Every mail accepted so far, in arrival order (a copy)."""
        with self._changed:
            return list(self._mails)

    @property
    def count(self) -> int:
        """How many mails were accepted."""
        with self._changed:
            return self._count

    def add(self, mail: ReceivedMail) -> None:
        """Record an accepted mail (called on the server's thread)."""
        with self._changed:
            if self.keep_messages:
                self._mails.append(mail)
            self._count += 1
            self._changed.notify_all()

    @property
    def sessions_opened(self) -> int:
        """How many SMTP sessions (connections) were accepted."""
        with self._changed:
            return self._sessions_opened

    @property
    def sessions_closed(self) -> int:
        """How many of them have ended, closed by the client or by the sink."""
        with self._changed:
            return self._sessions_closed

    def session_ended(self) -> None:
        """Record a closed session (called on the server's thread)."""
        with self._changed:
            self._sessions_closed += 1
            self._changed.notify_all()

    def take_deferral(self, address: str) -> bool:
        """Whether to defer ``address`` this time (one fewer left if so)."""
        with self._changed:
            left = self.deferrals.get(address, 0)
            if left > 0:
                self.deferrals[address] = left - 1
                return True
            return False

    def clear(self) -> None:
        """Forget what arrived."""
        with self._changed:
            self._mails.clear()
            self._count = 0

    def wait_for(self, count: int, timeout: float = 30.0) -> list[ReceivedMail]:
        """Block until at least ``count`` mails arrived; return them.

        Raises:
            TimeoutError: fewer arrived within ``timeout`` seconds.
        """
        with self._changed:
            self._wait_until(lambda: self._count, count, "mails arrived", timeout)
            return list(self._mails)

    def wait_for_sessions_closed(self, count: int, timeout: float = 30.0) -> None:
        """Block until at least ``count`` sessions have ended.

        Raises:
            TimeoutError: fewer ended within ``timeout`` seconds.
        """
        with self._changed:
            self._wait_until(lambda: self._sessions_closed, count, "sessions ended", timeout)

    def _wait_until(
        self, counted: Callable[[], int], count: int, what: str, timeout: float
    ) -> None:
        """Wait, holding ``_changed``, until ``counted()`` reaches ``count``."""
        deadline = time.monotonic() + timeout
        while counted() < count:
            left = deadline - time.monotonic()
            if left <= 0:
                msg = f"{counted()} {what} within {timeout} s, expected {count}"
                raise TimeoutError(msg)
            self._changed.wait(left)

    async def wait_for_async(self, count: int, seconds: float = 30.0) -> list[ReceivedMail]:
        """:meth:`wait_for` for a coroutine (the event loop keeps running)."""
        return await asyncio.to_thread(self.wait_for, count, seconds)

    # ---- server ----

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword) or self.credentials is None:
            return AuthResult(success=False, handled=False)
        login, password = data.login.decode(), data.password.decode()
        accepted = self.credentials.get(login) == password
        return AuthResult(success=accepted, handled=False, auth_data=data if accepted else None)

    def _protocol(self) -> SMTP:
        with self._changed:
            self._sessions_opened += 1
        return _CountedSMTP(
            self,
            _Handler(self),
            hostname="bugless-test-smtp",
            tls_context=self.starttls_context,
            require_starttls=self.require_starttls,
            auth_required=self.credentials is not None,
            auth_require_tls=self.credentials is not None
            and (self.starttls_context is not None or self.implicit_tls_context is not None),
            authenticator=self._authenticate if self.credentials is not None else None,
            data_size_limit=None,
            timeout=self.session_timeout_seconds,
        )

    def start(self) -> SmtpSink:
        """Listen (``port`` is the port bound); returns once connections are accepted."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    loop.create_server(
                        self._protocol, self.host, self.port, ssl=self.implicit_tls_context
                    )
                )
            except BaseException as exc:  # reported by start() in the caller's thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            try:
                loop.run_forever()
            finally:
                self._server.close()
                loop.run_until_complete(self._server.wait_closed())
                loop.close()

        self._thread = threading.Thread(target=serve, name="bugless-smtp-sink", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop listening and end the thread."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop = self._thread = self._server = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A plain SMTP sink for one test (no TLS, no AUTH, accepts everything)."""
    with SmtpSink() as sink:
        yield sink


def main() -> None:
    """Run a sink until interrupted: ``python -m bugless_testing.smtp``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (::1 too)")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--data-delay", type=float, default=0.0, help="seconds before DATA's 250")
    args = parser.parse_args()
    sink = SmtpSink(
        host=args.host, port=args.port, data_delay_seconds=args.data_delay, keep_messages=False
    )
    with sink:
        print(f"listening on {host_port(sink.host, sink.port)}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    print(f"received {sink.count} mails", flush=True)


if __name__ == "__main__":
    main()
