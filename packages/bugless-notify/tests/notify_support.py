"""What the notifier tests share: a real webhook receiver, and deliveries to queue.

The receiver is a real HTTP server (the standard library's, on its own
threads) on a loopback port the OS picked. It checks every request's
signature the way a real receiver would, and can be scripted per path: answer
503 three times then 200, answer 429 with a Retry-After, or hang.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bugless_notify.queue import NewDelivery
from bugless_notify.render import ChangeNotice, Person, Reason, render_notification
from bugless_notify.webhook import DELIVERY_HEADER, SIGNATURE_HEADER, verify_signature
from bugless_proto import v1

SECRET = "s3cr3t-" + "0123456789abcdef" * 3
PUBLIC_URL = "https://bugs.example.com"
PEOPLE = {
    "u_alice": Person("Alice Smith", "alice"),
    "u_bob": Person("Bob Jones", "bob"),
    "u_carol": Person("Carol White", "carol"),
}


def sample_issue(issue_id: int = 123, title: str = "Disk full on /var") -> v1.Issue:
    return v1.Issue(
        id=issue_id,
        title=title,
        status=v1.Status.ASSIGNED,
        priority=v1.Priority.P1,
        severity=v1.Severity.S2,
        type=v1.IssueType.BUG,
        component_id=7,
        reporter="u_alice",
        assignee="u_bob",
        cc=["u_carol"],
        version=4,
    )


def sample_entry(
    issue_id: int = 123, version: int = 4, comment: str = "Moved to P1."
) -> v1.HistoryEntry:
    return v1.HistoryEntry(
        issue_id=issue_id,
        version=version,
        author="u_alice",
        created_at=datetime.datetime(2026, 3, 1, 12, 30, tzinfo=datetime.UTC),
        comment=comment,
        changes=[
            v1.FieldChange(field="status", old_value="NEW", new_value="ASSIGNED"),
            v1.FieldChange(field="priority", old_value="P2", new_value="P1"),
            v1.FieldChange(field="assignee", old_value="", new_value="u_bob"),
            v1.FieldChange(field="cc", added=["u_carol"], removed=["u_bob"]),
        ],
    )


def notice(
    issue_id: int = 123, version: int = 4, reason: Reason = Reason.ASSIGNEE, **kwargs: Any
) -> ChangeNotice:
    return ChangeNotice(
        issue=sample_issue(issue_id),
        entry=sample_entry(issue_id, version),
        reason=reason,
        public_url=PUBLIC_URL,
        people=PEOPLE,
        components={7: "Platform>Storage"},
        **kwargs,
    )


def mail_delivery(
    n: int, *, recipient: str | None = None, issue_id: int | None = None
) -> NewDelivery:
    """The ``n``-th test mail: its own issue (so its own thread) unless told otherwise."""
    issue = issue_id if issue_id is not None else 1000 + n
    return NewDelivery(
        delivery_id=f"change-{issue}-4/email/user{n}",
        channel="email",
        recipient=recipient or f"user{n}@example.com",
        recipient_name=f"User {n}",
        message=render_notification(notice(issue)),
    )


def webhook_delivery(key: str, endpoint: str, *, issue_id: int = 123) -> NewDelivery:
    return NewDelivery(
        delivery_id=key,
        channel="webhook",
        recipient=endpoint,
        message=render_notification(notice(issue_id, reason=Reason.WEBHOOK)),
    )


@dataclass(frozen=True)
class ReceivedRequest:
    """One POST the receiver got, and what it answered."""

    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool
    status: int

    @property
    def delivery_id(self) -> str:
        return self.headers.get(DELIVERY_HEADER.lower(), "")


@dataclass
class WebhookReceiver:
    """A real HTTP server recording signed POSTs; scripted answers per path."""

    secret: str = SECRET
    requests: list[ReceivedRequest] = field(default_factory=list)
    #: path -> answers to give in order (then 200).
    scripts: dict[str, list[int]] = field(default_factory=dict)
    #: path -> seconds to wait before answering.
    hangs: dict[str, float] = field(default_factory=dict)
    #: path -> Retry-After header value sent with non-2xx answers.
    retry_after: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, path: str, *statuses: int) -> None:
        with self._lock:
            self.scripts[path] = list(statuses)

    def _answer(self, path: str) -> int:
        with self._lock:
            script = self.scripts.get(path)
            return script.pop(0) if script else 200

    def _record(self, request: ReceivedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def received(self, path: str | None = None) -> list[ReceivedRequest]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def wait_for(self, path: str, count: int, timeout: float = 30.0) -> list[ReceivedRequest]:
        deadline = time.monotonic() + timeout
        while True:
            got = self.received(path)
            if len(got) >= count:
                return got
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(got)} requests to {path}, expected {count}")
            time.sleep(0.02)

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                hang = receiver.hangs.get(self.path)
                if hang:
                    time.sleep(hang)
                status = receiver._answer(self.path)
                receiver._record(
                    ReceivedRequest(
                        path=self.path,
                        headers={k.lower(): v for k, v in self.headers.items()},
                        body=body,
                        signature_ok=verify_signature(
                            receiver.secret, body, self.headers.get(SIGNATURE_HEADER)
                        ),
                        status=status,
                    )
                )
                self.send_response(status)
                if status >= 300 and self.path in receiver.retry_after:
                    self.send_header("Retry-After", receiver.retry_after[self.path])
                if 300 <= status < 400:
                    self.send_header("Location", "https://elsewhere.example.com/hook?token=x")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the tests read ``requests`` instead."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self._server = None


def run_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()
