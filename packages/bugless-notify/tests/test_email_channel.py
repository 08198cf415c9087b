"""The ``email`` channel against a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from notify_support import notice

from bugless_core.errors import InvalidArgument
from bugless_core.notification_channel import DeliveryStatus, Notification
from bugless_notify.mail import EmailChannel, SmtpSecurity, SmtpSettings
from bugless_notify.render import render_notification
from bugless_testing.ports import refused_port
from bugless_testing.smtp import SmtpSink


def _settings(port: int, **overrides: object) -> SmtpSettings:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "security": SmtpSecurity.NONE,
        "sender": "bugless <bugless@bugs.example.com>",
        "timeout_seconds": 5.0,
    }
    values.update(overrides)
    return SmtpSettings(**values)


def _notification(
    key: str = "change-123-4/email/u_bob", recipient: str = "bob@example.com", issue_id: int = 123
) -> Notification:
    return Notification(
        delivery_id=key,
        recipient=recipient,
        recipient_name="Bob Jones",
        message=render_notification(notice(issue_id)),
    )


@pytest.fixture
async def channel(smtp_sink: SmtpSink) -> AsyncIterator[EmailChannel]:
    channel = EmailChannel(_settings(smtp_sink.port))
    yield channel
    await channel.close()


async def test_a_mail_has_both_parts_and_the_notification_headers(
    channel: EmailChannel, smtp_sink: SmtpSink
) -> None:
    result = await channel.deliver(_notification())
    assert result.status is DeliveryStatus.DELIVERED
    (mail,) = smtp_sink.wait_for(1)
    assert mail.sender == "bugless@bugs.example.com"
    assert mail.recipients == ("bob@example.com",)
    message = mail.message
    assert message["From"] == "bugless <bugless@bugs.example.com>"
    assert message["To"] == "Bob Jones <bob@example.com>"
    assert message["Subject"] == "[bugless] b/123: Disk full on /var"
    assert message["X-Bugless-Delivery"] == "change-123-4/email/u_bob"
    assert message["X-Bugless-Reason"] == "assignee"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["List-Unsubscribe"] == "<https://bugs.example.com/settings/notifications>"
    assert message.get_content_type() == "multipart/alternative"
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert plain is not None
    assert html is not None
    assert "Status: New → Assigned" in plain.get_content()
    assert "https://bugs.example.com/issues/123" in plain.get_content()
    assert 'href="https://bugs.example.com/issues/123#entry-4"' in html.get_content()


async def test_mails_about_one_issue_share_a_thread_and_others_do_not(
    channel: EmailChannel, smtp_sink: SmtpSink
) -> None:
    await channel.deliver(_notification("change-123-4/email/u_bob"))
    await channel.deliver(_notification("change-123-5/email/u_bob"))
    await channel.deliver(_notification("change-77-2/email/u_bob", issue_id=77))
    first, second, other = (m.message for m in smtp_sink.wait_for(3))
    root = "<issue-123@bugs.example.com>"
    assert first["In-Reply-To"] == root
    assert first["References"] == root
    assert second["In-Reply-To"] == root
    assert first["Message-ID"] != second["Message-ID"]
    assert other["In-Reply-To"] == "<issue-77@bugs.example.com>"
    assert first["Message-ID"].startswith("<issue-123.")
    assert first["Message-ID"].endswith("@bugs.example.com>")


async def test_a_redelivery_carries_the_same_message_id(
    channel: EmailChannel, smtp_sink: SmtpSink
) -> None:
    notification = _notification()
    await channel.deliver(notification)
    await channel.deliver(Notification(**{**notification.__dict__, "attempt": 2}))
    first, again = (m.message for m in smtp_sink.wait_for(2))
    assert first["Message-ID"] == again["Message-ID"]


async def test_a_refused_recipient_is_a_permanent_failure_with_the_servers_reason(
    channel: EmailChannel, smtp_sink: SmtpSink
) -> None:
    smtp_sink.refusals["ghost@example.com"] = "550 5.1.1 no such user here"
    result = await channel.deliver(_notification(recipient="ghost@example.com"))
    assert result.status is DeliveryStatus.REJECTED
    assert "550" in result.reason
    assert "no such user here" in result.reason
    # The session stays usable for the next mail.
    assert (await channel.deliver(_notification())).status is DeliveryStatus.DELIVERED


async def test_a_deferred_recipient_is_retryable(
    channel: EmailChannel, smtp_sink: SmtpSink
) -> None:
    smtp_sink.deferrals["busy@example.com"] = 1
    result = await channel.deliver(_notification(recipient="busy@example.com"))
    assert result.status is DeliveryStatus.RETRY
    assert "451" in result.reason
    again = await channel.deliver(_notification(recipient="busy@example.com"))
    assert again.status is DeliveryStatus.DELIVERED


async def test_an_unreachable_relay_is_retryable() -> None:
    with refused_port() as closed_port:
        channel = EmailChannel(_settings(closed_port))
        result = await channel.deliver(_notification())
        await channel.close()
    assert result.status is DeliveryStatus.RETRY
    assert "unreachable" in result.reason


async def test_an_address_that_cannot_be_mailed_is_rejected_without_sending(
    channel: EmailChannel, smtp_sink: SmtpSink
) -> None:
    for bad in ("not-an-address", "a@b.example\r\nBcc: x@y.example"):
        result = await channel.deliver(_notification(recipient=bad))
        assert result.status is DeliveryStatus.REJECTED
    assert smtp_sink.count == 0


async def test_a_session_the_relay_dropped_is_replaced_transparently() -> None:
    with SmtpSink(session_timeout_seconds=1.0) as sink:
        channel = EmailChannel(_settings(sink.port))
        assert (await channel.deliver(_notification("k1"))).status is DeliveryStatus.DELIVERED
        # The relay closes the idle pooled session after its 1 s; the channel still holds it.
        await asyncio.to_thread(sink.wait_for_sessions_closed, 1)
        assert (await channel.deliver(_notification("k2"))).status is DeliveryStatus.DELIVERED
        await channel.close()
        assert [m.message["X-Bugless-Delivery"] for m in sink.wait_for(2)] == ["k1", "k2"]
        assert sink.sessions_opened == 2  # k2 went on a new session


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("smtp-ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


@pytest.fixture
def starttls_sink(server_tls: ssl.SSLContext) -> Iterator[SmtpSink]:
    with SmtpSink(
        starttls_context=server_tls,
        require_starttls=True,
        credentials={"notifier": "correct horse"},
    ) as sink:
        yield sink


async def test_starttls_and_login_protect_the_session(
    starttls_sink: SmtpSink, ca_file: Path
) -> None:
    channel = EmailChannel(
        _settings(
            starttls_sink.port,
            security=SmtpSecurity.STARTTLS,
            ca_file=ca_file,
            username="notifier",
            password="correct horse",
        )
    )
    result = await channel.deliver(_notification())
    await channel.close()
    assert result.status is DeliveryStatus.DELIVERED, result.reason
    (mail,) = starttls_sink.wait_for(1)
    assert mail.secure
    assert mail.login == "notifier"


async def test_a_wrong_password_is_retryable_not_a_dead_letter(
    starttls_sink: SmtpSink, ca_file: Path
) -> None:
    channel = EmailChannel(
        _settings(
            starttls_sink.port,
            security=SmtpSecurity.STARTTLS,
            ca_file=ca_file,
            username="notifier",
            password="wrong",
        )
    )
    result = await channel.deliver(_notification())
    await channel.close()
    assert result.status is DeliveryStatus.RETRY
    assert "login failed" in result.reason
    assert starttls_sink.count == 0


async def test_a_relay_certificate_from_an_unknown_ca_is_refused(starttls_sink: SmtpSink) -> None:
    channel = EmailChannel(
        _settings(
            starttls_sink.port,
            security=SmtpSecurity.STARTTLS,
            username="notifier",
            password="correct horse",
        )
    )
    result = await channel.deliver(_notification())
    await channel.close()
    assert result.status is DeliveryStatus.RETRY
    assert "certificate" in result.reason.lower()
    assert starttls_sink.count == 0


async def test_starttls_required_but_not_offered_sends_nothing(smtp_sink: SmtpSink) -> None:
    channel = EmailChannel(_settings(smtp_sink.port, security=SmtpSecurity.STARTTLS))
    result = await channel.deliver(_notification())
    await channel.close()
    assert result.status is DeliveryStatus.RETRY
    assert smtp_sink.count == 0


async def test_implicit_tls_delivers(server_tls: ssl.SSLContext, ca_file: Path) -> None:
    with SmtpSink(implicit_tls_context=server_tls) as sink:
        channel = EmailChannel(_settings(sink.port, security=SmtpSecurity.TLS, ca_file=ca_file))
        result = await channel.deliver(_notification())
        await channel.close()
        assert result.status is DeliveryStatus.DELIVERED, result.reason
        assert sink.wait_for(1)[0].secure


async def test_options_are_read_from_strings_and_a_wrong_one_is_named() -> None:
    channel = await EmailChannel.open(
        {
            "host": "relay.example.com",
            "port": "587",
            "security": "STARTTLS",
            "sender": "b@x.example",
        }
    )
    assert channel.settings.port == 587
    assert channel.settings.security is SmtpSecurity.STARTTLS
    assert channel.settings.id_domain == "x.example"
    await channel.close()
    with pytest.raises(InvalidArgument, match=r"email\.port: 'twenty-five' is not a whole number"):
        await EmailChannel.open({"port": "twenty-five"})
    with pytest.raises(InvalidArgument, match=r"email\.security: 'ssl' is not one of"):
        await EmailChannel.open({"security": "ssl"})
    with pytest.raises(InvalidArgument, match=r"email\.sender: 'nobody' has no e-mail address"):
        await EmailChannel.open({"sender": "nobody"})
    with pytest.raises(InvalidArgument, match=r"email\.username and password"):
        await EmailChannel.open({"username": "x"})
    with pytest.raises(InvalidArgument, match=r"email\.ca_file: '/nonexistent/ca\.pem' is not a"):
        await EmailChannel.open({"ca_file": "/nonexistent/ca.pem"})
    with pytest.raises(InvalidArgument, match=r"email\.timeout_seconds: 0\.0 must be more"):
        await EmailChannel.open({"timeout_seconds": "0"})


async def test_non_ascii_and_long_headers_arrive_intact(
    channel: EmailChannel, smtp_sink: SmtpSink
) -> None:
    title = "Überlauf in der Warteschlange — 日本語のタイトル " + "very long words " * 8
    base = render_notification(notice())
    message = type(base)(**{**base.__dict__, "subject": f"[bugless] b/123: {title}"})
    notification = Notification(
        "k-ü", "jose@example.com", message, recipient_name='José "Pepe" Núñez'
    )
    assert (await channel.deliver(notification)).status is DeliveryStatus.DELIVERED
    (mail,) = smtp_sink.wait_for(1)
    assert mail.message["Subject"] == f"[bugless] b/123: {title}"
    assert mail.message["To"].addresses[0].display_name == 'José "Pepe" Núñez'
    assert mail.message["To"].addresses[0].addr_spec == "jose@example.com"
    assert mail.message["X-Bugless-Delivery"] == "k-ü"
    assert all(len(line) <= 998 for line in mail.raw.split(b"\r\n"))
    plain = mail.message.get_body(("plain",))
    assert plain is not None
    assert plain.get_content().replace("\r\n", "\n") == message.text


async def test_a_line_starting_with_a_dot_survives_smtp(
    channel: EmailChannel, smtp_sink: SmtpSink
) -> None:
    base = render_notification(notice())
    text = "first\n.\n.hidden line\nlast\n"
    message = type(base)(**{**base.__dict__, "text": text})
    assert (await channel.deliver(Notification("k-dot", "a@example.com", message))).status is (
        DeliveryStatus.DELIVERED
    )
    plain = smtp_sink.wait_for(1)[0].message.get_body(("plain",))
    assert plain is not None
    assert plain.get_content().replace("\r\n", "\n") == text


async def test_a_message_queued_without_a_settings_page_has_no_unsubscribe_header(
    channel: EmailChannel, smtp_sink: SmtpSink
) -> None:
    """Deliveries queued by an older notifier carry no settings URL: no empty header."""
    queued = _notification()
    old = dataclasses.replace(queued, message=dataclasses.replace(queued.message, settings_url=""))
    assert (await channel.deliver(old)).status is DeliveryStatus.DELIVERED
    (mail,) = smtp_sink.wait_for(1)
    assert "List-Unsubscribe" not in mail.message
    assert mail.message["Auto-Submitted"] == "auto-generated"


async def test_a_one_click_link_is_the_unsubscribe_header_with_its_post_header(
    channel: EmailChannel, smtp_sink: SmtpSink
) -> None:
    """RFC 8058: an https one-click link replaces the settings page; an http one cannot be one.

    A client offering "unsubscribe" POSTs ``List-Unsubscribe=One-Click`` to
    the link; RFC 8058 allows it only over https, so a site served over http
    keeps the settings page (RFC 2369) and no Post header.
    """
    queued = _notification()
    link = "https://bugs.example.com/unsubscribe/eyJ0.eyJ1.c2ln"
    one_click = dataclasses.replace(
        queued, message=dataclasses.replace(queued.message, unsubscribe_url=link)
    )
    plain_http = dataclasses.replace(
        queued,
        message=dataclasses.replace(queued.message, unsubscribe_url=link.replace("https", "http")),
    )
    for notification in (one_click, plain_http):
        assert (await channel.deliver(notification)).status is DeliveryStatus.DELIVERED
    first, second = smtp_sink.wait_for(2)
    assert first.message["List-Unsubscribe"] == f"<{link}>"
    assert first.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert second.message["List-Unsubscribe"] == (
        "<https://bugs.example.com/settings/notifications>"
    )
    assert "List-Unsubscribe-Post" not in second.message


async def test_every_mail_of_one_tracker_carries_its_list_id(
    channel: EmailChannel, smtp_sink: SmtpSink
) -> None:
    """RFC 2919: a filter sorts a tracker's mail by ``List-Id``, the web's host.

    Before, there was none: only ``X-Bugless-Reason`` and the subject prefix,
    neither of which tells two trackers apart.
    """
    queued = _notification()
    rocket = dataclasses.replace(
        queued,
        message=dataclasses.replace(
            queued.message, settings_url="https://Rocket.example.org:8443/settings/notifications"
        ),
    )
    unsent = dataclasses.replace(
        queued, message=dataclasses.replace(queued.message, settings_url="")
    )
    for notification in (queued, rocket, unsent):
        assert (await channel.deliver(notification)).status is DeliveryStatus.DELIVERED
    mails = smtp_sink.wait_for(3)
    assert [m.message["List-Id"] for m in mails] == [
        "bugless <bugless.bugs.example.com>",
        "bugless <bugless.rocket.example.org>",
        # No site link (queued by an older notifier): the Message-ID domain.
        "bugless <bugless.bugs.example.com>",
    ]
