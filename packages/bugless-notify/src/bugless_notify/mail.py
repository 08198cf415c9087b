"""The ``email`` channel: one notification as one multipart mail over SMTP (aiosmtplib).

What a mail client gets, and why:

* ``text/plain`` and ``text/html`` alternatives of the same content;
* ``Message-ID: <issue-123.<hash of the delivery id>@domain>``: derived from the
  delivery's idempotency key, so a mail sent twice (a notifier died after the
  relay accepted it, before it could record that) carries the same id both
  times and the recipient's mail system can drop the copy;
* ``In-Reply-To`` and ``References`` naming the issue's thread root
  ``<issue-123@domain>``, so clients (Gmail, Thunderbird, Outlook, mutt) show
  every mail about one issue as one conversation;
* ``X-Bugless-Delivery`` (the idempotency key), ``X-Bugless-Reason`` (why you
  got it, for filters) and ``Auto-Submitted: auto-generated`` (RFC 3834, so
  vacation responders do not answer);
* ``List-Id: bugless <bugless.bugs.example.com>`` (RFC 2919): the web's host
  (from the message's settings link, else the ``Message-ID`` domain) under the
  label ``bugless``, the same for every mail of one tracker, so a mail filter
  can sort a tracker's mail by it whoever sent it and why;
* ``List-Unsubscribe: <https://…/unsubscribe/<token>>`` with
  ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058) when the
  message carries its recipient's one-click link and the web is served over
  https: a client's "unsubscribe" button POSTs there and the web mutes the
  mail's issue for the recipient, the token (signed by the Authenticator for
  them and that issue) standing in for a session. Otherwise
  ``List-Unsubscribe: <https://…/settings/notifications>`` (RFC 2369), the page
  where they turn notifications off (digests; an http site). RFC 8058 also
  asks that a DKIM signature cover both headers: the relay's signing to set up.

Failures: a refusal with a 5xx code (unknown mailbox, message rejected) is
permanent; a 4xx code, a timeout, a dropped connection or a failed login are
worth retrying. A failed login or TLS handshake is the notifier's
configuration, not the mail's: retrying lets the backlog go out once an
operator has fixed the secret, instead of dead-lettering every mail.

SMTP sessions are pooled (``max_connections``), because a new session costs
a TCP (and TLS) handshake and EHLO on every mail; a pooled session the relay
has closed meanwhile is replaced transparently.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import functools
import hashlib
import re
import ssl
import time
from collections.abc import Mapping
from email.utils import formatdate, parseaddr
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

import aiosmtplib

from bugless_core.errors import InvalidArgument
from bugless_core.notification_channel import DeliveryResult, Notification, NotificationChannel
from bugless_notify import _mime
from bugless_notify._options import ChannelOptions

_DOMAIN = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$")


class SmtpSecurity(enum.StrEnum):
    """How the session to the relay is protected."""

    #: Plain SMTP (a relay on the same host or pod only).
    NONE = "none"
    #: Plain connect, then STARTTLS, required (port 587/25).
    STARTTLS = "starttls"
    #: TLS from the first byte (SMTPS, port 465).
    TLS = "tls"


@dataclasses.dataclass(frozen=True, kw_only=True)
class SmtpSettings:
    """Where and how the ``email`` channel sends, field by field.

    Attributes:
        host: The SMTP relay.
        port: Its port.
        security: ``none``, ``starttls`` (required, the default) or ``tls``.
        ca_file: PEM bundle the relay's certificate must chain to; unset uses
            the system's trust store.
        username: Login name; empty sends without authenticating.
        password: Password of ``username`` (from a Kubernetes Secret).
        sender: ``From`` header and envelope sender (``bugless
            <bugless@example.com>``).
        message_id_domain: Right-hand side of ``Message-ID``s; empty takes the
            domain of ``sender``.
        timeout_seconds: Bound on each SMTP command (connect included).
        max_connections: SMTP sessions kept open and used at once. Each mail
            takes four round trips on its session, so this, more than CPU,
            bounds the rate (bench/notify_delivery.py: ~350 mails/s with 64).
        idle_seconds: A pooled session unused this long is closed rather than
            reused (relays drop idle sessions; Postfix after 300 s).
    """

    host: str = "localhost"
    port: int = 25
    security: SmtpSecurity = SmtpSecurity.STARTTLS
    ca_file: Path | None = None
    username: str = ""
    password: str = ""
    sender: str = "bugless <bugless@localhost>"
    message_id_domain: str = ""
    timeout_seconds: float = 30.0
    max_connections: int = 16
    idle_seconds: float = 60.0

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port: {self.port} is not a TCP port (1-65535)")
        if "@" not in parseaddr(self.sender)[1]:
            raise ValueError(f"sender: {self.sender!r} has no e-mail address (name <a@b.example>)")
        if not _DOMAIN.match(self.id_domain):
            raise ValueError(f"message_id_domain: {self.id_domain!r} is not a domain name")
        if self.max_connections < 1:
            raise ValueError("max_connections: must be at least 1")
        if self.timeout_seconds <= 0:
            raise ValueError("timeout_seconds: must be more than 0")
        if self.idle_seconds <= 0:
            raise ValueError("idle_seconds: must be more than 0")
        if bool(self.username) != bool(self.password):
            raise ValueError("username and password: set both or neither")

    @functools.cached_property
    def sender_address(self) -> str:
        """The bare address of :attr:`sender` (the envelope sender)."""
        return parseaddr(self.sender)[1]

    @functools.cached_property
    def from_header(self) -> str:
        """:attr:`sender` as a ``From`` value (a non-ASCII name encoded)."""
        return _mime.address(*parseaddr(self.sender))

    @functools.cached_property
    def id_domain(self) -> str:
        """The domain ``Message-ID``s end with."""
        return self.message_id_domain or self.sender_address.rpartition("@")[2]

    @classmethod
    def from_options(cls, config: Mapping[str, Any]) -> SmtpSettings:
        """Settings from the channel's string options (``host``, ``port``, ...).

        Raises:
            bugless_core.errors.InvalidArgument: naming the option at fault.
        """
        options = ChannelOptions("email", config)
        default = cls()
        try:
            return cls(
                host=options.text("host", default.host),
                port=options.integer("port", default.port, minimum=1),
                security=options.choice("security", SmtpSecurity, default.security),
                ca_file=options.path("ca_file"),
                username=options.text("username"),
                password=options.text("password"),
                sender=options.text("sender", default.sender),
                message_id_domain=options.text("message_id_domain"),
                timeout_seconds=options.seconds("timeout_seconds", default.timeout_seconds),
                max_connections=options.integer(
                    "max_connections", default.max_connections, minimum=1
                ),
                idle_seconds=options.seconds("idle_seconds", default.idle_seconds),
            )
        except ValueError as exc:
            raise InvalidArgument(f"email.{exc}") from None


def message_id(delivery_id: str, thread_id: str, domain: str) -> str:
    """The ``Message-ID`` of a delivery: the same for every attempt of it."""
    digest = hashlib.sha256(delivery_id.encode("utf-8")).hexdigest()[:32]
    return f"<{thread_id}.{digest}@{domain}>"


def thread_root_id(thread_id: str, domain: str) -> str:
    """The id every mail of a thread refers to (``<issue-123@domain>``)."""
    return f"<{thread_id}@{domain}>"


def list_id(site_url: str, domain: str) -> str:
    """The ``List-Id`` of a tracker (RFC 2919): ``bugless <bugless.HOST>``.

    ``HOST`` is ``site_url``'s host name (one per tracker, which a sender
    address shared by several trackers is not), else ``domain``.
    """
    host = (urlsplit(site_url).hostname or "").rstrip(".")
    if not _DOMAIN.match(host):
        host = domain
    return f"bugless <bugless.{host.lower()}>"


def build_email(notification: Notification, settings: SmtpSettings) -> bytes:
    """The mail for ``notification``, as sent (see the module docstring for its headers).

    Raises:
        ValueError: the recipient or a header value cannot be put in a mail
            (a line break, no ``@``).
    """
    recipient = notification.recipient
    if "@" not in recipient or not recipient.isascii() or any(c in recipient for c in " \r\n<>,"):
        raise ValueError(f"{recipient!r} is not an e-mail address")
    content = notification.message
    domain = settings.id_domain
    root = thread_root_id(content.thread_id, domain)
    headers = [
        ("From", settings.from_header),
        ("To", _mime.address(notification.recipient_name, recipient)),
        ("Subject", content.subject),
        ("Date", formatdate(usegmt=True)),
        ("Message-ID", message_id(notification.delivery_id, content.thread_id, domain)),
        ("In-Reply-To", root),
        ("References", root),
        ("X-Bugless-Delivery", notification.delivery_id),
    ]
    if content.reason:
        headers.append(("X-Bugless-Reason", content.reason))
    if content.unsubscribe_url.startswith("https://"):
        # RFC 8058: the client POSTs "List-Unsubscribe=One-Click" to the
        # link, which mutes this issue for this recipient (the web's
        # /unsubscribe/<token>); one https URI, no session needed.
        headers.append(("List-Unsubscribe", f"<{content.unsubscribe_url}>"))
        headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    elif content.settings_url:
        headers.append(("List-Unsubscribe", f"<{content.settings_url}>"))
    headers.append(("List-Id", list_id(content.settings_url, domain)))
    headers.append(("Auto-Submitted", "auto-generated"))
    return _mime.multipart_alternative(
        headers, content.text, content.html, seed=notification.delivery_id
    )


def classify_smtp_error(exc: Exception) -> DeliveryResult:
    """Whether a failed send is worth retrying (see the module docstring)."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        refusals = exc.recipients
        reason = "; ".join(f"SMTP {r.code} {r.message}" for r in refusals) or "recipient refused"
        if refusals and all(r.code >= 500 for r in refusals):
            return DeliveryResult.rejected(f"recipient refused: {reason}")
        return DeliveryResult.retry(f"recipient deferred: {reason}")
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return DeliveryResult.retry(
            f"SMTP login failed ({exc.code} {exc.message}); check the credentials"
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        what = type(exc).__name__.removeprefix("SMTP")
        reason = f"SMTP {exc.code} {exc.message} ({what})"
        if exc.code >= 500 and not isinstance(
            exc, aiosmtplib.SMTPHeloError | aiosmtplib.SMTPConnectError
        ):
            return DeliveryResult.rejected(reason)
        return DeliveryResult.retry(reason)
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return DeliveryResult.retry(f"the SMTP relay does not support what is configured: {exc}")
    if isinstance(exc, TimeoutError):
        return DeliveryResult.retry(f"SMTP relay timed out ({type(exc).__name__})")
    if isinstance(exc, ssl.SSLError):
        return DeliveryResult.retry(f"TLS with the SMTP relay failed: {exc}")
    return DeliveryResult.retry(f"SMTP relay unreachable: {type(exc).__name__}: {exc}")


class _SmtpSessions:
    """Open SMTP sessions, reused across mails, at most ``max_connections`` in use."""

    def __init__(self, settings: SmtpSettings, tls_context: ssl.SSLContext | None) -> None:
        self._settings = settings
        self._tls_context = tls_context
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []
        self._slots = asyncio.Semaphore(settings.max_connections)
        self._closed = False

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self._settings
        client = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            timeout=s.timeout_seconds,
            use_tls=s.security is SmtpSecurity.TLS,
            start_tls=s.security is SmtpSecurity.STARTTLS,
            tls_context=self._tls_context,
            username=s.username or None,
            password=s.password or None,
        )
        await client.connect()
        return client

    def _take_idle(self) -> aiosmtplib.SMTP | None:
        while self._idle:
            client, since = self._idle.pop()
            if client.is_connected and time.monotonic() - since < self._settings.idle_seconds:
                return client
            client.close()
        return None

    def _give_back(self, client: aiosmtplib.SMTP) -> None:
        if self._closed or not client.is_connected:
            client.close()
        else:
            self._idle.append((client, time.monotonic()))

    async def send(self, mail: bytes, sender: str, recipient: str) -> None:
        """Send ``mail`` on a pooled session (or a new one); raise what aiosmtplib raised."""
        async with self._slots:
            client = self._take_idle()
            if client is not None:
                try:
                    await client.sendmail(sender, [recipient], mail)
                except aiosmtplib.SMTPServerDisconnected:
                    client.close()  # the relay dropped the idle session: use a new one
                except BaseException:
                    self._give_back(client)
                    raise
                else:
                    self._give_back(client)
                    return
            client = await self._connect()
            try:
                await client.sendmail(sender, [recipient], mail)
            finally:
                self._give_back(client)

    async def close(self) -> None:
        """Say QUIT on every idle session."""
        self._closed = True
        idle, self._idle = self._idle, []
        for client, _ in idle:
            try:
                await client.quit(timeout=2.0)
            except (aiosmtplib.SMTPException, OSError):
                client.close()


class EmailChannel(NotificationChannel):
    """Deliver notifications as mail through an SMTP relay.

    Options (``open``): ``host``, ``port``, ``security``, ``ca_file``,
    ``username``, ``password``, ``sender``, ``message_id_domain``,
    ``timeout_seconds``, ``max_connections``, ``idle_seconds``; see
    :class:`SmtpSettings`. A recipient is an e-mail address.
    """

    name = "email"

    def __init__(self, settings: SmtpSettings) -> None:
        """Use ``settings``; sessions are opened on the first delivery."""
        self.settings = settings
        tls_context: ssl.SSLContext | None = None
        if settings.security is not SmtpSecurity.NONE:
            cafile = str(settings.ca_file) if settings.ca_file else None
            tls_context = ssl.create_default_context(cafile=cafile)
        self._sessions = _SmtpSessions(settings, tls_context)

    @classmethod
    async def open(cls, config: Mapping[str, Any]) -> Self:
        """Build from string options (see the class docstring)."""
        return cls(SmtpSettings.from_options(config))

    async def deliver(self, notification: Notification) -> DeliveryResult:
        """Send one mail; a refusal is reported, never raised."""
        try:
            mail = build_email(notification, self.settings)
        except ValueError as exc:
            return DeliveryResult.rejected(f"cannot build the mail: {exc}")
        try:
            await self._sessions.send(mail, self.settings.sender_address, notification.recipient)
        except (aiosmtplib.SMTPException, OSError) as exc:  # TLS errors included
            return classify_smtp_error(exc)
        except ValueError as exc:  # aiosmtplib's check of the addresses
            return DeliveryResult.rejected(f"address refused before sending: {exc}")
        return DeliveryResult.delivered()

    async def close(self) -> None:
        """Close the pooled SMTP sessions."""
        await self._sessions.close()
