"""``/dev/mail``: the mails ``bugless dev``'s SMTP sink received (development only).

The notifier of a ``bugless dev`` stack sends to a local sink that writes
each mail into a directory (``--dev-mailbox``); these pages list and show
them, so a newcomer sees notifications work without a mail relay. Without
``--dev-mailbox`` (which needs ``--dev``) both pages are 404, as if they did
not exist. Admins only even then: the mailbox holds everyone's mail.

A mail is shown as text: its headers, its ``text/plain`` part and the source
of its HTML part, all escaped by the template, so a mail's markup never runs
on this origin (the page's CSP forbids inline styles and framing anyway).
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from litestar import Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from bugless_core.errors import PermissionDenied
from bugless_web.frontend import frontend_of, render, viewer_of

#: Files the sink writes (``<ns>-<n>.eml``); anything else is never opened.
_MAIL_NAME = re.compile(r"^[0-9]{1,24}-[0-9]{1,9}\.eml$")
#: The sink's header naming the envelope recipients.
_ENVELOPE_HEADER = "X-Bugless-Dev-Envelope-To"
#: Mails listed on the page (newest first).
LIST_LIMIT = 200


@dataclass(frozen=True)
class DevMail:
    """One mail of the mailbox, parsed for display."""

    name: str
    to: str
    sender: str
    subject: str
    date: str
    headers: list[tuple[str, str]]
    text: str
    html: str


def _mailbox(request: Request[Any, Any, Any]) -> Path:
    mailbox = frontend_of(request).settings.dev_mailbox
    if mailbox is None:
        raise NotFoundException("not found")
    return mailbox


def _part(message: EmailMessage, subtype: str) -> str:
    body = message.get_body(preferencelist=(subtype,))
    if body is None:
        return ""
    content = body.get_content()
    return content if isinstance(content, str) else ""


def _parse(path: Path, *, bodies: bool) -> DevMail:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return DevMail(
        name=path.name,
        to=str(message.get(_ENVELOPE_HEADER, "") or message.get("To", "")),
        sender=str(message.get("From", "")),
        subject=str(message.get("Subject", "")),
        date=str(message.get("Date", "")),
        headers=[(k, str(v)) for k, v in message.items() if k != _ENVELOPE_HEADER]
        if bodies
        else [],
        text=_part(message, "plain") if bodies else "",
        html=_part(message, "html") if bodies else "",
    )


async def _admin(request: Request[Any, Any, Any]) -> None:
    viewer = await viewer_of(request)
    if not viewer.is_admin:
        raise PermissionDenied("the dev mailbox holds everyone's mail: admins only")


@get("/dev/mail")
async def dev_mailbox(request: Request[Any, Any, Any]) -> Response[str]:
    """The newest mails the dev SMTP sink received."""
    mailbox = _mailbox(request)
    await _admin(request)
    names = sorted((p for p in mailbox.glob("*.eml") if _MAIL_NAME.match(p.name)), reverse=True)
    mails = [_parse(path, bodies=False) for path in names[:LIST_LIMIT]]
    return render(
        request, "dev_mail.html", {"mails": mails, "total": len(names), "mailbox": mailbox}
    )


@get("/dev/mail/{name:str}")
async def dev_mail(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[str]:
    """One mail: headers, plain text, and its HTML part in a sandbox."""
    mailbox = _mailbox(request)
    await _admin(request)
    path = mailbox / name
    if not _MAIL_NAME.match(name) or not path.is_file():
        raise NotFoundException(f"no mail {name!r} in the dev mailbox")
    return render(request, "dev_mail_one.html", {"mail": _parse(path, bodies=True)})


ROUTES = [dev_mailbox, dev_mail]
