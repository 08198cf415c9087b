"""A bot's connections when one of the two tls entries naming its username is removed.

An operator who learns that one certificate of a bot leaked removes its
``sha256:`` entry and keeps the bot's CN entry, which names the same
username (one user). The Authenticator used to keep sessions per user, so
the leaked certificate's session, and the API connection using it, went on
until the API's identity re-check (``--identity-ttl-seconds``, 5 minutes)
or the session's expiry. A session now records the entry that admitted its
certificate, and the mapping change ends it. Real stack (PostgreSQL, Model,
Authenticator as subprocesses, its mapping file re-read while it serves), a
real API over mutual TLS, certificates of the stack's PKI.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets

import pytest

from bugless_api.client import BuglessClient, RetryPolicy
from bugless_api.server import RunningApi
from bugless_core.errors import Unauthenticated
from bugless_dev.pki import CertificateFiles
from bugless_dev.stack import LocalStack

#: The Authenticator's sweep (10 s) and its file re-check (2 s), then the
#: Model's refresh of ended sessions (5 s), with room for a busy machine.
WITHIN_SECONDS = 60.0


def _client(api: RunningApi, stack: LocalStack, files: CertificateFiles) -> BuglessClient:
    return BuglessClient(
        f"127.0.0.1:{api.port}",
        cert=files.cert,
        key=files.key,
        ca=stack.pki.ca_file,
        timeout=30,
        retry=RetryPolicy(attempts=1),
    )


async def _username(client: BuglessClient) -> str:
    identity = await client.whoami()
    assert identity.user is not None
    return identity.user.username


async def test_a_removed_entrys_connection_is_refused_while_the_other_entrys_is_served(
    api: RunningApi, bugless_stack: LocalStack
) -> None:
    """Two entries, one username: the leaked certificate's ``sha256:`` entry is removed.
    Its open connection's next calls are refused (its session ended: SESSION_ENDED from
    the Model, on which the API re-checks the connection at once since 775b1685 and tells
    the bot the Authenticator's reason, "not mapped") well within the API's identity
    re-check, and so is a new connection; the CN entry's connection is served throughout.
    Before, the leaked connection was served until its identity re-check, 5 minutes later."""
    pki = bugless_stack.pki
    username = f"rotating-bot-{secrets.token_hex(3)}"
    kept = pki.client_certificate_for(username)
    leaked = pki.issue_client_certificate(f"leaked-{secrets.token_hex(3)}")
    leaked_entry = "sha256:" + hashlib.sha256(leaked.der).hexdigest()
    pki.map_subject(leaked_entry, username)
    async with (
        _client(api, bugless_stack, kept) as kept_client,
        _client(api, bugless_stack, leaked) as leaked_client,
    ):
        assert await _username(kept_client) == username
        assert await _username(leaked_client) == username
        await leaked_client.list_components()
        await kept_client.list_components()

        pki.unmap_subject(leaked_entry)
        deadline = asyncio.get_running_loop().time() + WITHIN_SECONDS
        refused: Unauthenticated | None = None
        while refused is None:
            try:
                await leaked_client.list_components()
            except Unauthenticated as exc:
                refused = exc
                continue
            assert asyncio.get_running_loop().time() < deadline, "the leaked one is served"
            await kept_client.list_components()
            await asyncio.sleep(0.5)
        assert refused.message.endswith("is not mapped to a bugless user"), refused.message
        assert refused.reason == "CERTIFICATE_NOT_MAPPED"
        await kept_client.list_components()
    async with _client(api, bugless_stack, leaked) as again:
        with pytest.raises(Unauthenticated, match=r"is not mapped to a bugless user$"):
            await again.whoami()
    async with _client(api, bugless_stack, kept) as kept_again:
        assert await _username(kept_again) == username
