"""A bot whose Authenticator session ended goes on calling, unaware: the API signs it in again.

The Model refuses an identity assertion whose session has ended (reason
``SESSION_ENDED``), before it runs the call. The API used to pass that on as
UNAUTHENTICATED "make the call again", which no client retries, so a bot
failed once per connection whenever its session went: the Authenticator
restarted without its sessions, an administrator ended them. Now the API asks
the Authenticator again for the connection's certificate, still mapped, gets a
new session, and sends the refused call once more with its assertion; the
bot's call succeeds, a write applied once.

Real stack (PostgreSQL, Model, Authenticator), a second Authenticator on it
that the API uses, stopped and started again on its port while the bot's
sessions are ended; a real API over mutual TLS; the bugless client with no
retries of its own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import secrets
import time

import pytest
from api_support import Bots, extra_api

from bugless_api.client import BuglessClient, RetryPolicy
from bugless_dev.stack import LocalStack

#: What the API logs when it sends a refused Model call again with a new session.
RENEWED = "was refused (SESSION_ENDED): sent again with a new session"


def _end_every_session(stack: LocalStack, username: str) -> int:
    """End ``username``'s live sessions with the CLI, as lost in a restart; how many."""
    listed = stack.run_bugless("auth", "user", "sessions", username, "--json")
    ids = [session["session_id"] for session in json.loads(listed.stdout)]
    ends = [arg for session_id in ids for arg in ("--end", session_id)]
    stack.run_bugless("auth", "user", "sessions", username, *ends)
    return len(ids)


async def _watch_once(client: BuglessClient) -> None:
    """Open a watch, take its ``subscribed`` marker, and close it."""
    events = client.watch(query="is:open", reconnect=False)
    try:
        marker = await anext(events)
        assert marker.subscribed
    finally:
        await events.aclose()


@pytest.mark.parametrize("calls", ["writes", "watches"])
async def test_a_bots_calls_go_on_after_the_authenticator_restarted_without_its_sessions(
    bots: Bots, caplog: pytest.LogCaptureFixture, calls: str
) -> None:
    """Every call of the bot after the restart succeeds while the Model refuses the
    old session's assertion and the API renews it: writes (each applied once) and the
    opening of a watch (a stream) alike. Before, the first one the Model refused failed
    with UNAUTHENTICATED "make the call again"."""
    caplog.set_level(logging.INFO, logger="bugless.api")
    stack = bots.stack
    auth = await asyncio.to_thread(stack.start_auth, name="auth-renewal")
    address = dataclasses.replace(stack.client_address("auth", "api"), port=auth.port)
    username = f"bot-{secrets.token_hex(3)}"
    files = stack.pki.client_certificate_for(username)
    async with extra_api(
        bots, auth=address, identity_ttl_seconds=300.0, user_changes_seconds=0.0
    ) as running:
        client = BuglessClient(
            f"127.0.0.1:{running.port}",
            cert=files.cert,
            key=files.key,
            ca=stack.pki.ca_file,
            timeout=30,
            retry=RetryPolicy(attempts=1),
        )
        try:
            assert (await client.whoami()).user.username == username  # type: ignore[union-attr]
            created = [(await client.create_hotlist(f"before-{secrets.token_hex(3)}")).name]
            await _watch_once(client)

            await asyncio.to_thread(stack.stop_service, auth)
            assert await asyncio.to_thread(_end_every_session, stack, username) == 1
            auth = await asyncio.to_thread(
                stack.start_auth, "--port", str(address.port), name="auth-renewal-again"
            )

            deadline = time.monotonic() + 30
            while RENEWED not in caplog.text:
                assert time.monotonic() < deadline, "no Model call was refused in 30 s"
                # One kind of call only: the one the Model refuses, and the API makes
                # again, is of that kind.
                if calls == "writes":
                    name = f"after-{secrets.token_hex(3)}"
                    created.append((await client.create_hotlist(name)).name)
                else:
                    await _watch_once(client)
                await asyncio.sleep(0.5)
            await client.list_components()
            created.append((await client.create_hotlist(f"then-{secrets.token_hex(3)}")).name)
            mine = [h.name for h in await client.list_hotlists(member=username)]
            assert sorted(mine) == sorted(created), "a write was lost or applied twice"
            assert (await client.whoami()).user.username == username  # type: ignore[union-attr]
        finally:
            client.close()
            await asyncio.to_thread(stack.stop_service, auth)
