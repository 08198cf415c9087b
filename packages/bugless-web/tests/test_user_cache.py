"""The web's short cache of the people it shows, against real Authenticators.

The web talks to an Authenticator of the test's own (``bugless auth serve`` on
the session's database, with a Prometheus port), so the ``GetUsers`` calls
counted are the ones that reached it, read from its
``grpc_server_handled_total``. Its own user cache follows the users' change
feed (and lasts a millisecond when it cannot), so the web tier's cache is the
staleness measured: its TTL when the web does not follow the feed, a poll when
it does.

A rename is a real one: a certificate identity is mapped by the ``tls``
backend's mapping file, read when an Authenticator starts; the first
Authenticator knows the certificate as ``before-…``, a second one started with
the mapping changed to ``after-…`` renames the same user when the certificate
authenticates there.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import secrets
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from litestar.testing import AsyncTestClient
from web_support import World, create_issue, grpc_calls, sign_in

from bugless_core.clients import ServiceAddress, call
from bugless_core.user_cache import UserCache
from bugless_dev.stack import RunningService
from bugless_proto import v1
from bugless_web import WebSettings, create_app
from bugless_web.backends import Backends

TTL = 6.0
#: How long a web tier that must not read the users' change feed is watched not reading it.
QUIET_SECONDS = 1.0


@dataclass
class Authenticator:
    address: ServiceAddress
    metrics_port: int
    service: RunningService
    #: The certificate flow is the API's (only its identity may run it).
    as_api: ServiceAddress

    async def get_users_calls(self) -> int:
        return await grpc_calls(self.metrics_port, "GetUsers")

    async def get_user_changes_calls(self) -> int:
        return await grpc_calls(self.metrics_port, "GetUserChanges")

    async def caught_up(self) -> None:
        """Wait until its own cache has applied the users' change feed up to the head.

        Until then its ``GetUsers`` answers may predate a change a frontend
        following the feed has seen (a rename just made), and such a frontend
        uses them once instead of keeping them.
        """
        channel = self.address.channel()
        try:
            auth = v1.AuthenticatorStub(channel)
            head = await call(auth.get_user_changes, v1.GetUserChangesRequest())
            deadline = time.monotonic() + 15
            probe = v1.GetUsersRequest(user_ids=["u_nobody"])
            while (await call(auth.get_users, probe)).version < head.version:
                assert time.monotonic() < deadline, "the Authenticator did not apply its feed"
                await asyncio.sleep(0.05)
        finally:
            channel.close()

    async def authenticate(self, certificate_der: bytes) -> v1.User:
        channel = self.as_api.channel()
        try:
            result = await call(
                v1.AuthenticatorStub(channel).authenticate_certificate,
                v1.AuthenticateCertificateRequest(certificate_der=certificate_der),
            )
        finally:
            channel.close()
        assert result.identity is not None
        assert result.identity.user is not None
        return result.identity.user


def _start_auth(world: World, mapping: Path, name: str) -> Authenticator:
    service = world.stack.start(
        "auth",
        ["auth", "serve", "--port", "0", "--metrics-port", "0"],
        name=name,
        env={
            "BUGLESS_AUTH_TLS_MAPPING_FILE": str(mapping),
            "BUGLESS_AUTH_CACHE_TTL_SECONDS": "0.001",
        },
    )
    assert service.address is not None
    assert service.metrics_port is not None
    api = world.stack.identities["api"]
    as_api = dataclasses.replace(service.address, cert=api.cert, key=api.key)
    return Authenticator(service.address, service.metrics_port, service, as_api)


def _mapping(directory: Path, common_name: str, username: str) -> Path:
    path = directory / f"tls-{username}.json"
    path.write_text(json.dumps({common_name.lower(): {"username": username, "bot": True}}))
    return path


@dataclass
class Rename:
    """A certificate user known as ``before`` to ``auth``; ``renamer`` calls it ``after``."""

    auth: Authenticator
    renamer: Authenticator
    certificate_der: bytes
    before: str
    after: str


@pytest.fixture(scope="module")
def rename(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rename]:
    directory = tmp_path_factory.mktemp("user-cache")
    tag = secrets.token_hex(3)
    certificate = world.stack.pki.issue_client_certificate(f"renamee-{tag}")
    before, after = f"before-{tag}", f"after-{tag}"
    common_name = certificate.common_name
    auth = _start_auth(world, _mapping(directory, common_name, before), "auth-counted")
    try:
        renamer = _start_auth(world, _mapping(directory, common_name, after), "auth-renamer")
        try:
            yield Rename(auth, renamer, certificate.der, before, after)
        finally:
            world.stack.stop_service(renamer.service)
    finally:
        world.stack.stop_service(auth.service)


async def _get_users_per_three_loads(rename: Rename, settings: WebSettings, issue: v1.Issue) -> int:
    async with AsyncTestClient(create_app(settings), base_url="http://testserver.local") as client:
        await sign_in(client, "bob")
        before = await rename.auth.get_users_calls()
        for _ in range(3):
            page = await client.get(f"/issues/{issue.id}")
            assert page.status_code == 200, page.text
            results = await client.get("/search", params={"q": f"id:{issue.id}"})
            assert results.status_code == 200, results.text
        return await rename.auth.get_users_calls() - before


async def test_repeated_page_loads_ask_the_authenticator_once_per_ttl(
    rename: Rename, web_settings: WebSettings, world: World, model: v1.ModelStub
) -> None:
    issue = await create_issue(model, world, "Seen often", assignee=world.users["carol"])
    on_auth = dataclasses.replace(web_settings, auth=rename.auth.address)

    uncached = await _get_users_per_three_loads(
        rename, dataclasses.replace(on_auth, user_cache_seconds=0), issue
    )
    cached = await _get_users_per_three_loads(
        rename, dataclasses.replace(on_auth, user_cache_seconds=60), issue
    )

    assert uncached >= 6  # at least one per page load
    # At most the first load (the home page that signing in lands on may have
    # fetched bob and carol already); the five after it know them.
    assert cached <= 1


async def test_without_the_feed_a_rename_shows_after_the_ttl_and_not_before(
    rename: Rename, web_settings: WebSettings, world: World, model: v1.ModelStub
) -> None:
    renamee = await rename.auth.authenticate(rename.certificate_der)
    assert renamee.username == rename.before
    issue = await create_issue(model, world, "Renamed assignee", assignee=renamee.user_id)
    settings = dataclasses.replace(
        web_settings, auth=rename.auth.address, user_cache_seconds=TTL, user_changes_seconds=0
    )
    async with AsyncTestClient(create_app(settings), base_url="http://testserver.local") as client:
        await sign_in(client, "bob")
        # The name is cached at some moment during the first page: after
        # ``asked_at`` and before ``answered_at`` (seconds apart on a loaded machine).
        asked_at = time.monotonic()
        first = await client.get(f"/issues/{issue.id}")
        answered_at = time.monotonic()
        assert f"/users/{rename.before}" in first.text

        renamed = await rename.renamer.authenticate(rename.certificate_der)
        assert (renamed.user_id, renamed.username) == (renamee.user_id, rename.after)
        within_ttl = await client.get(f"/issues/{issue.id}")
        assert time.monotonic() - asked_at < TTL, "too slow to see the cached name"
        assert f"/users/{rename.before}" in within_ttl.text
        assert f"/users/{rename.after}" not in within_ttl.text

        await asyncio.sleep(answered_at + TTL + 0.1 - time.monotonic())
        after_ttl = await client.get(f"/issues/{issue.id}")
        assert f"/users/{rename.after}" in after_ttl.text
        assert f"/users/{rename.before}" not in after_ttl.text


async def test_following_the_feed_a_rename_shows_within_a_poll_long_before_the_ttl(
    rename: Rename, web_settings: WebSettings, world: World, model: v1.ModelStub
) -> None:
    """The web reads GetUserChanges every 0.1 s and keeps people a minute otherwise."""
    renamee = await rename.auth.authenticate(rename.certificate_der)
    assert renamee.username == rename.before
    issue = await create_issue(model, world, "Renamed, followed", assignee=renamee.user_id)
    await rename.auth.caught_up()  # its answers are kept, not used once
    settings = dataclasses.replace(
        web_settings, auth=rename.auth.address, user_cache_seconds=60, user_changes_seconds=0.1
    )
    async with AsyncTestClient(create_app(settings), base_url="http://testserver.local") as client:
        await sign_in(client, "bob")
        first = await client.get(f"/issues/{issue.id}")
        assert f"/users/{rename.before}" in first.text
        calls = await rename.auth.get_users_calls()
        again = await client.get(f"/issues/{issue.id}")
        assert f"/users/{rename.before}" in again.text
        assert await rename.auth.get_users_calls() == calls, "kept: nobody changed"

        await rename.renamer.authenticate(rename.certificate_der)
        deadline = time.monotonic() + 15
        while True:
            page = await client.get(f"/issues/{issue.id}")
            if f"/users/{rename.after}" in page.text:
                break
            assert time.monotonic() < deadline, "the rename did not show within 15 s"
            await asyncio.sleep(0.1)
        assert f"/users/{rename.before}" not in page.text


async def test_the_feed_is_read_while_serving_not_after_close_and_never_with_0(
    rename: Rename, web_settings: WebSettings, world: World, model: v1.ModelStub
) -> None:
    """Backends made on this test's event loop, as the app makes them on start-up."""
    issue = await create_issue(model, world, "Watched", assignee=world.users["carol"])
    on_auth = dataclasses.replace(web_settings, auth=rename.auth.address, user_cache_seconds=60)
    backends = Backends(dataclasses.replace(on_auth, user_changes_seconds=0.1))
    try:
        assert set(await backends.users([world.users["carol"]])) == {world.users["carol"]}
        polls = await rename.auth.get_user_changes_calls()
        deadline = time.monotonic() + 15
        while await rename.auth.get_user_changes_calls() < polls + 3:
            assert time.monotonic() < deadline, "the web does not read the feed every 0.1 s"
            await asyncio.sleep(0.1)
    finally:
        backends.close()  # what the app's shutdown does (Frontend.stop)
    stopped = await rename.auth.get_user_changes_calls()
    await asyncio.sleep(QUIET_SECONDS)
    assert await rename.auth.get_user_changes_calls() == stopped, "stopped on close"

    never = dataclasses.replace(on_auth, user_changes_seconds=0)
    async with AsyncTestClient(create_app(never), base_url="http://testserver.local") as client:
        await sign_in(client, "bob")
        for _ in range(3):
            assert (await client.get(f"/issues/{issue.id}")).status_code == 200
        await asyncio.sleep(QUIET_SECONDS)
        assert await rename.auth.get_user_changes_calls() == stopped, "never read"


def _workers_of(server: RunningService, count: int) -> list[int]:
    """The pids of ``server``'s workers, once each says it has started serving."""
    deadline = time.monotonic() + 60
    while server.log.read_text().count("Application startup complete") < count:
        assert not server.process.exited, server.log.read_text()
        assert time.monotonic() < deadline, server.log.read_text()
        time.sleep(0.1)
    parent = server.process.pid
    return [int(pid) for pid in Path(f"/proc/{parent}/task/{parent}/children").read_text().split()]


async def test_each_web_worker_follows_the_feed_and_stops_cleanly(
    rename: Rename, world: World, model: v1.ModelStub
) -> None:
    """``bugless web serve --workers 2``: every worker shows a rename within a poll.

    Each worker is asked alone (the other one SIGSTOPped accepts nothing), so
    each one's own cache, kept 10 minutes, must have followed the feed on its
    own event loop; SIGTERM then ends both cleanly.
    """
    renamee = await rename.auth.authenticate(rename.certificate_der)
    assert renamee.username == rename.before
    issue = await create_issue(model, world, "Renamed, two workers", assignee=renamee.user_id)
    await rename.auth.caught_up()
    server = world.stack.start_web(
        "--auth",
        f"127.0.0.1:{rename.auth.address.port}",
        env={
            "BUGLESS_WEB_WORKERS": "2",
            "BUGLESS_WEB_USER_CACHE_SECONDS": "600",
            "BUGLESS_WEB_USER_CHANGES_SECONDS": "0.1",
            "BUGLESS_WEB_DRAIN_SECONDS": "0.2",
        },
    )
    try:
        workers = _workers_of(server, 2)
        async with httpx.AsyncClient(base_url=server.url or "") as signing:
            await sign_in(cast("AsyncTestClient[Any]", signing), "bob")
            cookies = signing.cookies

        async def page_of(worker: int) -> str:
            """The issue page as ``worker`` serves it (the other one stopped meanwhile)."""
            others = [pid for pid in workers if pid != worker]
            for pid in others:
                os.kill(pid, signal.SIGSTOP)
            try:
                async with httpx.AsyncClient(base_url=server.url or "", cookies=cookies) as client:
                    page = await client.get(f"/issues/{issue.id}", timeout=30)
            finally:
                for pid in others:
                    os.kill(pid, signal.SIGCONT)
            assert page.status_code == 200, page.text
            return page.text

        for worker in workers:
            assert f"/users/{rename.before}" in await page_of(worker)
        await rename.renamer.authenticate(rename.certificate_der)
        for worker in workers:
            deadline = time.monotonic() + 15
            while f"/users/{rename.after}" not in await page_of(worker):
                assert time.monotonic() < deadline, f"worker {worker}: no rename within 15 s"
                await asyncio.sleep(0.1)
    finally:
        world.stack.stop_service(server)
    assert server.process.returncode == 0
    log = server.log.read_text()
    assert "Traceback" not in log
    assert "Task was destroyed" not in log


def test_a_negative_ttl_is_refused(web_settings: WebSettings) -> None:
    with pytest.raises(ValueError, match="user-cache-seconds"):
        dataclasses.replace(web_settings, user_cache_seconds=-1)


class _Directory:
    """Answers look-ups from a dict and records each batch asked for."""

    def __init__(self) -> None:
        self.users = {"id-bob": "bob", "id-carol": "Carol"}
        self.asked: list[list[str]] = []

    async def by_ids(self, batch: list[str]) -> v1.UsersResponse:
        self.asked.append(batch)
        return v1.UsersResponse(
            users=[v1.User(user_id=i, username=self.users[i]) for i in batch if i in self.users]
        )

    async def by_names(self, batch: list[str]) -> v1.UsersResponse:
        self.asked.append(batch)
        ids = {name.lower(): user_id for user_id, name in self.users.items()}
        return v1.UsersResponse(
            users=[v1.User(user_id=ids[n], username=self.users[ids[n]]) for n in batch if n in ids]
        )


async def test_both_directions_share_what_was_learnt_and_unknown_names_are_not_kept() -> None:
    directory, now = _Directory(), [100.0]
    cache = UserCache(ttl_seconds=5.0, clock=lambda: now[0])
    found = await cache.by_name(["carol", "nobody"], directory.by_names)
    assert {name: u.user_id for name, u in found.items()} == {"Carol": "id-carol"}
    assert set(await cache.by_id(["id-carol", "id-bob", ""], directory.by_ids)) == {
        "id-carol",
        "id-bob",
    }
    assert set(await cache.by_name(["CAROL", "bob", "nobody"], directory.by_names)) == {
        "Carol",
        "bob",
    }
    assert directory.asked == [["carol", "nobody"], ["id-bob"], ["nobody"]]
    # An id nobody has is asked once per TTL (a name nobody goes by, every time).
    assert set(await cache.by_id(["id-gone", "id-bob"], directory.by_ids)) == {"id-bob"}
    assert directory.asked[3:] == [["id-gone"]]
    now[0] += 5.1
    await cache.by_id(["id-bob", "id-gone"], directory.by_ids)
    assert directory.asked[-1] == ["id-bob", "id-gone"]


async def test_a_ttl_of_zero_asks_every_time() -> None:
    directory = _Directory()
    cache = UserCache(ttl_seconds=0)
    for _ in range(2):
        await cache.by_id(["id-bob"], directory.by_ids)
    assert directory.asked == [["id-bob"], ["id-bob"]]


async def test_custom_field_values_nobody_goes_by_are_asked_once_per_ttl(
    rename: Rename, web_settings: WebSettings
) -> None:
    settings = dataclasses.replace(web_settings, auth=rename.auth.address, user_cache_seconds=60)
    tag = secrets.token_hex(3)

    async def look_ups_per_three_searches(client: AsyncTestClient[Any], query: str) -> int:
        before = await grpc_calls(rename.auth.metrics_port, "LookupUsers")
        for _ in range(3):
            page = await client.get("/search", params={"q": query})
            assert page.status_code < 500, page.text
        return await grpc_calls(rename.auth.metrics_port, "LookupUsers") - before

    async with AsyncTestClient(create_app(settings), base_url="http://testserver.local") as client:
        await sign_in(client, "bob")
        # A custom field's value might be a username: asked once, then known to be nobody's.
        assert await look_ups_per_three_searches(client, f'"Found In":v{tag}') == 1
        # A people term's unknown name is asked every time (it may sign in any moment).
        assert await look_ups_per_three_searches(client, f"assignee:nobody-{tag}") == 3
