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
import contextlib
import dataclasses
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypeVar

import pytest
from api_support import Bots, extra_api
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bugless_api.client import MAX_SESSION_RENEWALS, BuglessClient, RetryPolicy
from bugless_core.attachments import CHUNK_BYTES
from bugless_core.errors import NotFound, Unauthenticated, Unavailable
from bugless_dev.stack import LocalStack, RunningService
from bugless_testing.tcp_relay import ReplyHoldingRelay

#: What the API logs when it sends a refused Model call again with a new session.
RENEWED = "was refused (SESSION_ENDED): sent again with a new session"
#: ... and when it sends one refused for its assertion's dropped key again.
RESIGNED = "was refused (INVALID_ASSERTION): sent again with a new assertion"
#: ... and when it cannot (an upload), and answers that the call may be made again.
ANSWERED_RENEWED = "was refused (SESSION_ENDED) and not sent again: answered SESSION_RENEWED"


def _end_every_session(stack: LocalStack, username: str) -> int:
    """End ``username``'s live sessions with the CLI, as lost in a restart; how many."""
    ended = stack.run_bugless("auth", "user", "sessions", username, "--end-all", "--json")
    shown = json.loads(ended.stdout)
    assert shown["sessions"] == [], shown
    count: int = shown["sessions_ended"]
    return count


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


def _client(stack: LocalStack, port: int, username: str) -> BuglessClient:
    """The bugless client of bot ``username`` (mapped now) on the API at ``port``, no retries."""
    files = stack.pki.client_certificate_for(username)
    return BuglessClient(
        f"127.0.0.1:{port}",
        cert=files.cert,
        key=files.key,
        ca=stack.pki.ca_file,
        timeout=30,
        retry=RetryPolicy(attempts=1),
    )


async def test_a_bots_calls_go_on_after_a_key_rotation_dropped_its_assertions_key(
    bots: Bots, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """The Authenticator is restarted with a new token key only (the last step of a
    rotation), while the API still holds the bot's assertion signed with the old one:
    the Model refuses it as INVALID_ASSERTION, and the API asks the Authenticator
    again and sends the call with the new key's assertion; every write applied once.
    Before, every call failed so until the API's identity expired (up to 5 minutes).
    An Authenticator and a Model of the test's own, so the stack's keep their key."""
    caplog.set_level(logging.INFO, logger="bugless.api")
    stack = bots.stack
    new_key = tmp_path / "new-token-key.pem"
    new_key.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    services: list[RunningService] = []

    def start(kind: str, *args: str, env: dict[str, str] | None = None) -> RunningService:
        running = stack.start(kind, [kind, "serve", *args], name=f"{kind}-rotation", env=env)
        services.append(running)
        return running

    try:
        auth = await asyncio.to_thread(start, "auth", "--port", "0")
        model = await asyncio.to_thread(
            start, "model", "--port", "0", env={"BUGLESS_MODEL_AUTH": f"127.0.0.1:{auth.port}"}
        )
        addresses = {
            "auth": dataclasses.replace(stack.client_address("auth", "api"), port=auth.port),
            "model": dataclasses.replace(stack.client_address("model", "api"), port=model.port),
        }
        async with extra_api(
            bots, identity_ttl_seconds=300.0, user_changes_seconds=0.0, **addresses
        ) as running:
            username = f"bot-{secrets.token_hex(3)}"
            client = _client(stack, running.port, username)
            try:
                created = [(await client.create_hotlist(f"before-{secrets.token_hex(3)}")).name]
                await asyncio.to_thread(stack.stop_service, auth)
                auth = await asyncio.to_thread(
                    start,
                    "auth",
                    "--port",
                    str(auth.port),
                    env={"BUGLESS_AUTH_TOKEN_KEY_FILES": str(new_key)},
                )
                deadline = time.monotonic() + 30
                while RESIGNED not in caplog.text:
                    assert time.monotonic() < deadline, "no Model call was refused in 30 s"
                    name = f"after-{secrets.token_hex(3)}"
                    created.append((await client.create_hotlist(name)).name)
                    await asyncio.sleep(0.5)
                created.append((await client.create_hotlist(f"then-{secrets.token_hex(3)}")).name)
                mine = [h.name for h in await client.list_hotlists(member=username)]
                assert sorted(mine) == sorted(created), "a write was lost or applied twice"
            finally:
                client.close()
    finally:
        for service in services:
            await asyncio.to_thread(stack.stop_service, service)


async def test_a_call_whose_certificate_is_another_users_now_is_not_sent_again_as_them(
    bots: Bots, caplog: pytest.LogCaptureFixture
) -> None:
    """The bot's mapping entry is pointed at another bot while the API still holds its
    identity: the Model refuses the ended session's assertion, and the Authenticator
    now signs the certificate in as the other bot. The call is refused with
    UNAUTHENTICATED (reason IDENTITY_CHANGED) saying so, not made as the other bot;
    the next call is the other bot's. Before, the API sent it again as the other bot,
    which found a write it never made under its name."""
    caplog.set_level(logging.INFO, logger="bugless.api")
    stack = bots.stack
    username, other = f"bot-{secrets.token_hex(3)}", f"bot-{secrets.token_hex(3)}"
    # Not following the users' change feed, which would have the API ask again
    # before the Model refuses: as while the feed lags behind a mapping change.
    async with extra_api(bots, identity_ttl_seconds=300.0, user_changes_seconds=0.0) as running:
        client = _client(stack, running.port, username)
        other_client = _client(stack, running.port, other)
        try:
            created = [(await client.create_hotlist(f"mine-{secrets.token_hex(3)}")).name]
            await other_client.whoami()
            stack.pki.map_subject(f"{username}.bot", other)
            deadline = time.monotonic() + 40
            with pytest.raises(Unauthenticated) as refused:  # noqa: PT012 - until the Model refuses
                while True:
                    assert time.monotonic() < deadline, "no call was refused in 40 s"
                    assert RENEWED not in caplog.text, "the call was sent again as the other bot"
                    name = f"made-{secrets.token_hex(3)}"
                    created.append((await client.create_hotlist(name)).name)
                    await asyncio.sleep(0.5)
            assert refused.value.reason == "IDENTITY_CHANGED"
            assert f"signs in as {other!r} now, not as {username!r}" in refused.value.message
            assert RENEWED not in caplog.text
            assert sorted(h.name for h in await other_client.list_hotlists(member=username)) == (
                sorted(created)
            )
            assert await other_client.list_hotlists(member=other) == []
            assert (await client.whoami()).user.username == other  # type: ignore[union-attr]
        finally:
            client.close()
            other_client.close()


async def test_an_upload_refused_as_of_its_ended_session_is_sent_again_whole(
    bots: Bots, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """An upload's messages are gone by the time the Model refuses its ended session,
    so the API cannot send it again itself; it answers UNAVAILABLE SESSION_RENEWED
    (nothing was attached), and the client sends the upload once more, the file read
    again from its start. Every attach succeeds and attaches its file once, whole.
    Before, the client retried uploads only when a replica was draining: that
    upload failed."""
    caplog.set_level(logging.INFO, logger="bugless.api")
    stack = bots.stack
    auth = await asyncio.to_thread(stack.start_auth, name="auth-upload-renewal")
    address = dataclasses.replace(stack.client_address("auth", "api"), port=auth.port)
    username = f"bot-{secrets.token_hex(3)}"
    files = stack.add_bot(username, groups=["component-creators"])
    content = secrets.token_bytes(3 * CHUNK_BYTES + 17)  # several messages: part sent, refused
    path = tmp_path / "trace.bin"
    path.write_bytes(content)
    async with extra_api(
        bots, auth=address, identity_ttl_seconds=300.0, user_changes_seconds=0.0
    ) as running:
        client = BuglessClient(
            f"127.0.0.1:{running.port}",
            cert=files.cert,
            key=files.key,
            ca=stack.pki.ca_file,
            timeout=30,
            retry=RetryPolicy(attempts=2, max_backoff=0.2),
        )
        try:
            component = await client.create_component(f"Renewal-{secrets.token_hex(3)}")
            issue = await client.create_issue("uploads across a session end", component.id)
            attached = []
            for _ in range(2):
                done = await client.attach(issue.id, path)
                assert done.attachment is not None
                attached.append(done.attachment.id)
            await asyncio.to_thread(stack.stop_service, auth)
            assert await asyncio.to_thread(_end_every_session, stack, username) == 1
            auth = await asyncio.to_thread(
                stack.start_auth, "--port", str(address.port), name="auth-upload-renewal-again"
            )

            deadline = time.monotonic() + 30
            while ANSWERED_RENEWED not in caplog.text:
                assert time.monotonic() < deadline, "no upload was refused in 30 s"
                done = await client.attach(issue.id, path)
                assert done.attachment is not None
                attached.append(done.attachment.id)
                await asyncio.sleep(0.5)
            listed = await client.list_attachments(issue.id)
            assert sorted(a.id for a in listed) == sorted(attached), "an upload attached twice"
            assert {a.size for a in listed} == {len(content)}
            copy = tmp_path / "copy.bin"
            await client.download_attachment(attached[-1], copy)
            assert copy.read_bytes() == content
        finally:
            client.close()
            await asyncio.to_thread(stack.stop_service, auth)


async def _model_call(client: BuglessClient) -> None:
    """A Model call that names no user (the API asks the Authenticator nothing for it)."""
    with pytest.raises(NotFound):
        await client.get_issue(2**62)


#: How often the rig's Model fetches the revoked sessions (``--assertion-refresh-seconds``):
#: a moment, so a test ending a session waits that long for the Model to refuse it,
#: not the default period's seconds.
_MODEL_REFRESH_SECONDS = 0.2


T = TypeVar("T")


@dataclasses.dataclass
class _Renewals:
    """A bot on an API whose renewals of its sessions the test ends before the API uses them.

    The API reaches its Authenticator through a relay whose replies are held:
    the Authenticator has started the session a renewal asks for, the API does
    not know it yet, and the test ends it and waits until the Model knows.
    """

    stack: LocalStack
    relay: ReplyHoldingRelay
    username: str
    client: BuglessClient
    bystander: BuglessClient
    #: How long until the Model refuses a session ended (its refresh period, and more).
    learns: float = _MODEL_REFRESH_SECONDS + 0.5

    async def end_the_session(self) -> None:
        """End the bot's one session, and wait until the Model refuses it."""
        assert await asyncio.to_thread(_end_every_session, self.stack, self.username) == 1
        await asyncio.sleep(self.learns)
        await _model_call(self.bystander)  # the Model fetches the revoked sessions

    async def end_renewals(self, call: asyncio.Future[T], count: int) -> T:
        """Await ``call``, ending the next ``count`` sessions the API starts for the bot first.

        Each is ended while the Authenticator's answer starting it is held
        (the API has asked for that one session: the relay holds its next
        request's answer); the session after those is let be.
        """
        stack, username = self.stack, self.username
        self.relay.hold()
        for ended in range(count):
            deadline = time.monotonic() + 30
            while not (ended_now := await asyncio.to_thread(_end_every_session, stack, username)):
                assert time.monotonic() < deadline, f"no session {ended + 2} was asked for in 30 s"
                assert not call.done(), call
                await asyncio.sleep(0.2)
            assert ended_now == 1, f"the API started {ended_now} sessions for one renewal"
            await asyncio.sleep(self.learns)
            await _model_call(self.bystander)
            if ended + 1 < count:
                self.relay.release_until_next_request()
        self.relay.release()
        return await call


@contextlib.asynccontextmanager
async def _renewals(bots: Bots, retry: RetryPolicy) -> AsyncIterator[_Renewals]:
    """A bot (a component creator) whose client has ``retry``, on an API of its own.

    The API's Model is one of the rig's own that learns of ended sessions
    every :data:`_MODEL_REFRESH_SECONDS` (``--assertion-refresh-seconds``),
    so each session a test ends costs a moment of waiting, not the default
    period's seconds.
    """
    stack = bots.stack
    auth = await asyncio.to_thread(stack.start_auth, name="auth-renewals")
    model = await asyncio.to_thread(
        stack.start_model,
        "--assertion-refresh-seconds",
        str(_MODEL_REFRESH_SECONDS),
        name="model-renewals",
    )
    relay = ReplyHoldingRelay(auth.port)
    await relay.start()
    address = dataclasses.replace(stack.client_address("auth", "api"), port=relay.port)
    username, other = f"bot-{secrets.token_hex(3)}", f"bot-{secrets.token_hex(3)}"
    files = stack.add_bot(username, groups=["component-creators"])
    other_files = stack.pki.client_certificate_for(other)
    model_address = dataclasses.replace(stack.client_address("model", "api"), port=model.port)
    async with extra_api(
        bots,
        auth=address,
        model=model_address,
        identity_ttl_seconds=300.0,
        user_changes_seconds=0.0,
    ) as running:
        client, bystander = (
            BuglessClient(
                f"127.0.0.1:{running.port}",
                cert=f.cert,
                key=f.key,
                ca=stack.pki.ca_file,
                timeout=90,
                retry=retry,
            )
            for f in (files, other_files)
        )
        try:
            await _model_call(bystander)  # its identity is kept: no Authenticator call
            yield _Renewals(stack, relay, username, client, bystander)
        finally:
            client.close()
            bystander.close()
            await relay.close()
            await asyncio.to_thread(stack.stop_service, auth)
            await asyncio.to_thread(stack.stop_service, model)


@pytest.mark.parametrize(("renewals", "answered"), [(1, 1), (3, 2)])
async def test_a_write_whose_renewed_session_ended_too_is_made_again_by_the_client(
    bots: Bots, caplog: pytest.LogCaptureFixture, renewals: int, answered: int
) -> None:
    """The API sends a refused write again once, with a new session; when that one has
    ended too, it answers UNAVAILABLE SESSION_RENEWED (nothing ran) with a third, and the
    client makes the write again, applied once; when the third has ended too by then, the
    API renews it and answers SESSION_RENEWED once more, and the client makes the write
    once more: once per renewal, whatever its retry policy (one retry here), which bounds
    failures, not renewals. Before, the client retried a write only when a replica was
    draining (the write failed although nothing had been written), and then counted
    the renewals against the policy's attempts: the second failed.

    Each session ended is ended between the API's renewal and its use: the
    Authenticator's answer to the renewal is held on the wire until the Model
    has learnt that the session it names has ended."""
    caplog.set_level(logging.INFO, logger="bugless.api")
    async with _renewals(bots, RetryPolicy(attempts=2, max_backoff=0.2)) as rig:
        created = [(await rig.client.create_hotlist(f"before-{secrets.token_hex(3)}")).name]
        await rig.end_the_session()
        write = asyncio.ensure_future(rig.client.create_hotlist(f"after-{secrets.token_hex(3)}"))
        created.append((await rig.end_renewals(write, renewals)).name)
        assert caplog.text.count(RENEWED) == answered  # the first, and each client's retry
        assert caplog.text.count(ANSWERED_RENEWED) == answered
        mine = [h.name for h in await rig.client.list_hotlists(member=rig.username)]
        assert sorted(mine) == sorted(created), "a write was lost or applied twice"


async def test_a_write_refused_session_renewed_more_than_the_cap_in_a_row_is_raised(
    bots: Bots, caplog: pytest.LogCaptureFixture
) -> None:
    """After MAX_SESSION_RENEWALS answers of SESSION_RENEWED in a row the client raises the next.

    Sessions ended as fast as the Authenticator starts them are being ended
    on purpose: making the call again would never end. Each session the API
    starts for the bot's write is ended before the API uses it, on a Model
    that learns so within a moment; the client (no retries of its own) makes
    the write again after each of the first three answers, raises the fourth,
    and the write was never applied."""
    caplog.set_level(logging.INFO, logger="bugless.api")
    async with _renewals(bots, RetryPolicy(attempts=1)) as rig:
        await rig.client.whoami()  # the bot's first session: its user is made
        await rig.end_the_session()
        name = f"never-{secrets.token_hex(3)}"
        write = asyncio.ensure_future(rig.client.create_hotlist(name))
        with pytest.raises(Unavailable) as refused:
            await rig.end_renewals(write, 2 * MAX_SESSION_RENEWALS + 1)
        assert refused.value.refused_with_session_renewed
        assert caplog.text.count(ANSWERED_RENEWED) == MAX_SESSION_RENEWALS + 1
        mine = [h.name for h in await rig.client.list_hotlists(member=rig.username)]
        assert name not in mine


@pytest.mark.parametrize("stream", ["download", "watch"])
async def test_a_stream_whose_renewed_session_ended_too_is_opened_again_by_the_client(
    bots: Bots, caplog: pytest.LogCaptureFixture, tmp_path: Path, stream: str
) -> None:
    """A download, and a watch's opening (not in place yet, reconnect=False), that the
    API opened again once with a new session which had ended too, are answered
    UNAVAILABLE SESSION_RENEWED, and the client opens them again at once with the
    third: the download is whole, the watch subscribed, by a client whose policy makes
    no retries (a renewal is no failure). Before, the download counted the renewal as
    an attempt and failed, and a watch not yet in place raised it."""
    caplog.set_level(logging.INFO, logger="bugless.api")
    async with _renewals(bots, RetryPolicy(attempts=1)) as rig:
        content = secrets.token_bytes(CHUNK_BYTES + 17)
        path, copy = tmp_path / "trace.bin", tmp_path / "copy.bin"
        path.write_bytes(content)
        component = await rig.client.create_component(f"Renewal-{secrets.token_hex(3)}")
        issue = await rig.client.create_issue("downloads across a session end", component.id)
        done = await rig.client.attach(issue.id, path)
        assert done.attachment is not None
        await rig.end_the_session()
        if stream == "download":
            download = rig.client.download_attachment(done.attachment.id, copy)
            got = await rig.end_renewals(asyncio.ensure_future(download), 1)
            assert got.size == len(content)
            assert copy.read_bytes() == content
        else:
            await rig.end_renewals(asyncio.ensure_future(_watch_once(rig.client)), 1)
        assert caplog.text.count(RENEWED) == 1
        assert caplog.text.count(ANSWERED_RENEWED) == 1


#: What the API logs when a refused call was not the request's only possible write.
ANSWERED_IN_PART = "after the request had made others: answered SESSION_ENDED, not SESSION_RENEWED"


async def test_a_write_refused_after_a_look_up_is_answered_make_it_again(
    bots: Bots, caplog: pytest.LogCaptureFixture
) -> None:
    """SESSION_RENEWED ("make it again") unless the request sent a write that may have run.

    The bot's change names an assignee the API asks the Authenticator for
    first (a call made with the bot's assertion); the bot's session ends
    while that answer is held, so the Model refuses the change, and the
    session the API renews it with is ended too. The change ran nothing and
    the look-up only read, so making the request again is safe: the API
    answers SESSION_RENEWED and the client makes the change again, applied
    once. Before, every call the request made counted (e552568e), so the bot
    got UNAUTHENTICATED telling it to read first, and its change was not
    made. (A request that sent a write first is still told to read first:
    bugless-core test_clients's
    test_a_refused_call_is_alone_unless_a_write_the_request_sent_may_have_run.)"""
    caplog.set_level(logging.INFO, logger="bugless.api")
    async with _renewals(bots, RetryPolicy(attempts=2, max_backoff=0.2)) as rig:
        assignee = f"ann-{secrets.token_hex(3)}"
        rig.stack.run_bugless("auth", "user", "add", assignee, "--password", "ann-pass-1")
        component = await rig.client.create_component(f"Renewal-{secrets.token_hex(3)}")
        issue = await rig.client.create_issue("a change across a session end", component.id)
        change = rig.client.update_issue(
            issue.id, expected_version=issue.version, assignee=assignee
        )
        await rig.end_renewals(asyncio.ensure_future(change), 2)
        assert ANSWERED_RENEWED in caplog.text
        assert ANSWERED_IN_PART not in caplog.text
        now = await rig.client.get_issue(issue.id)
        assert (now.assignee, now.version) == (assignee, issue.version + 1)  # made once
