"""Whether an LDAP server answers: one anonymous bind over a plain asyncio stream.

The background probe of a failed server (see :mod:`bugless_auth._ldap_breaker`)
does not use bonsai, on purpose. While bonsai's asyncio connection waits for a
reply it keeps the socket registered for write readiness as well, which a
connected socket always has, so the event loop wakes several thousand times a
second until the reply or the timeout (measured with bonsai 1.5: ~8,000
wake-ups per second of waiting). A sign-in pays that only until a server's
breaker opens; a bonsai probe of a hung server would pay it for
``connect_timeout`` every ``server_retry_seconds``, for as long as the server
hangs, on the event loop that serves every sign-in. A stream waits asleep.

The probe sends an anonymous simple bind (RFC 4511 section 4.2: no
credentials leave the process, so StartTLS is not needed for it) and waits for
any LDAP message back. Any answer counts, a refusal included
(confidentialityRequired, unwillingToPerform, a notice of disconnection): the
question is only whether the server is alive, and the next real operation
reports a refusal with its own message.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from urllib.parse import urlsplit

#: LDAPMessage { messageID 1, bindRequest { version 3, name "", simple "" } }.
ANONYMOUS_BIND = bytes.fromhex("300c020101600702010304008000")
#: LDAPMessage { messageID 2, unbindRequest }.
UNBIND = bytes.fromhex("30050201024200")
_SEQUENCE = 0x30


def probe_ssl_context(*, ca_file: str | None, verify: bool) -> ssl.SSLContext:
    """The TLS context of a probe of an ``ldaps://`` server, as the backend verifies it."""
    context = ssl.create_default_context(cafile=ca_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def ldap_answers(url: str, *, within: float, ssl_context: ssl.SSLContext) -> bool:
    """Whether the server at ``url`` answers an LDAP request within ``within`` seconds.

    ``ssl_context`` is used for ``ldaps://`` URLs only. Never raises for a
    network failure: a refused or reset connection, a TLS failure, silence
    and a reply that is not LDAP are all False.
    """
    parts = urlsplit(url)
    secure = parts.scheme == "ldaps"
    host = parts.hostname or "localhost"
    port = parts.port or (636 if secure else 389)
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(within):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=ssl_context if secure else None
            )
            writer.write(ANONYMOUS_BIND)
            await writer.drain()
            first = await reader.readexactly(1)
            if first[0] == _SEQUENCE:
                writer.write(UNBIND)
            return first[0] == _SEQUENCE
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return False
    finally:
        if writer is not None:
            writer.close()
            # A TLS close waits for the peer's close_notify; a hung peer never sends it.
            with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
                async with asyncio.timeout(0.5):
                    await writer.wait_closed()
