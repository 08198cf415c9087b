"""The SMTP sink of ``bugless dev``: every mail the notifier sends, kept as a file.

A newcomer should see notifications work without configuring a mail relay, so
``bugless dev`` runs the notifier against this sink (aiosmtpd on loopback, in
the dev supervisor's own event loop) and the web frontend shows the mailbox
directory at ``/dev/mail`` (only when it is given ``--dev-mailbox``, which
needs ``--dev``).

Each accepted mail is written as ``<time>-<n>.eml`` (the raw message with a
``X-Bugless-Dev-Envelope-To`` header naming its envelope recipients) through a
temporary file and a rename, so the web page never reads half a mail. The
directory keeps the newest :data:`KEEP` mails; older ones are removed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from pathlib import Path
from typing import cast

from aiosmtpd.smtp import SMTP, Envelope, Session

_log = logging.getLogger("bugless.dev.mail")
#: Mails kept in the mailbox directory (a dev stack is not an archive).
KEEP = 500
#: The header recording who the mail was for (the envelope, not ``To:``).
ENVELOPE_HEADER = "X-Bugless-Dev-Envelope-To"


class _Handler:
    def __init__(self, sink: MailSink) -> None:
        self.sink = sink

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        raw = cast("bytes", envelope.original_content or envelope.content or b"")
        recipients = ", ".join(envelope.rcpt_tos)
        header = f"{ENVELOPE_HEADER}: {recipients}\r\n".encode(errors="replace")
        await asyncio.to_thread(self.sink.store, header + raw)
        return "250 2.0.0 kept in the dev mailbox"


class MailSink:
    """aiosmtpd on ``127.0.0.1`` writing each mail into ``directory``."""

    def __init__(self, directory: Path) -> None:
        """Keep mails in ``directory`` (created when missing)."""
        self.directory = directory
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._numbers = itertools.count(1)

    async def start(self) -> int:
        """Listen on a free loopback port of the running loop; return the port."""
        self.directory.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(_Handler(self), hostname="bugless-dev-mail", data_size_limit=None),
            "127.0.0.1",
            0,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def store(self, raw: bytes) -> Path:
        """Write one mail atomically; drop the oldest beyond :data:`KEEP`."""
        name = f"{time.time_ns():020d}-{next(self._numbers):06d}.eml"
        target = self.directory / name
        partial = self.directory / f".{name}.partial"
        partial.write_bytes(raw)
        os.replace(partial, target)
        kept = sorted(self.directory.glob("*.eml"))
        for old in kept[:-KEEP]:
            old.unlink(missing_ok=True)
        _log.info("dev mail %s kept", name)
        return target

    async def stop(self) -> None:
        """Stop listening (the mails stay)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


__all__ = ["ENVELOPE_HEADER", "KEEP", "MailSink"]
