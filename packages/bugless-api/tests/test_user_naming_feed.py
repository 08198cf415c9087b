"""The API's user naming follows the users' change feed of a real Authenticator.

Everything is real: an Authenticator process of this module's own (mutual
TLS, the stack's database, its own cache following the feed from PostgreSQL,
a ``/metrics`` port that counts the calls it answers), API frontends on it
(``start_api``), bots calling them over mutual TLS. A rename is a real one:
the ``tls`` backend's mapping names a bot's certificate anew, and the
certificate authenticating at the Authenticator renames the user, which logs
the change in the feed; the API learns of it only through ``GetUserChanges``.
The caches here keep people 10 minutes, so a rename seen within a test's
deadline came through the feed, not a TTL.

The rules a race or an outage needs are checked on the API's
:class:`~bugless_api._users.UserDirectory` itself (the same
:class:`~bugless_core.user_cache.UserCache` the web uses), on the same real
Authenticator, with a clock of the test's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import httpx
import pytest
from api_support import Bots, ConnectAs, extra_api
from prometheus_client.parser import text_string_to_metric_families

from bugless_api._users import UserDirectory
from bugless_api.client import BuglessClient
from bugless_core.clients import ServiceAddress, call
from bugless_core.errors import Unavailable
from bugless_proto import v1
from bugless_testing.metrics import metric_total
from bugless_testing.polling import eventually

if TYPE_CHECKING:
    from bugless_dev.pki import CertificateFiles
    from bugless_dev.stack import RunningService

LONG_CACHE = 600.0
#: How long a frontend that must not read the feed is watched not reading it.
QUIET_SECONDS = 1.0


@dataclass
class FeedAuthenticator:
    """An Authenticator of this module's own, reached as the API reaches it."""

    service: RunningService
    #: Its address with the API's client certificate.
    as_api: ServiceAddress
    #: The stack's, to remap certificates (the ``tls`` backend reads it per check).
    bots: Bots

    async def calls(self, method: str) -> int:
        """How many ``method`` calls it answered OK, from its ``/metrics``."""
        return int(
            await metric_total(
                self.service.metrics_port,
                "grpc_server_handled_total",
                grpc_method=method,
                grpc_code="OK",
            )
        )

    async def rename(self, files: CertificateFiles, username: str) -> str:
        """Map ``files``' certificate to ``username`` and authenticate it; the user's id.

        The first time, the Authenticator makes the user; after, it renames them.
        """
        self.bots.stack.pki.map_subject(files.common_name, username)
        channel = self.as_api.channel()
        try:
            result = await call(
                v1.AuthenticatorStub(channel).authenticate_certificate,
                v1.AuthenticateCertificateRequest(certificate_der=files.der),
            )
        finally:
            channel.close()
        assert result.identity is not None
        assert result.identity.user is not None
        assert result.identity.user.username == username
        return result.identity.user.user_id


@pytest.fixture(scope="module")
def feed_auth(bots: Bots) -> Iterator[FeedAuthenticator]:
    stack = bots.stack
    service = stack.start(
        "auth", ["auth", "serve", "--port", "0", "--metrics-port", "0"], name="auth-feed"
    )
    assert service.address is not None
    api = stack.identities["api"]
    as_api = dataclasses.replace(service.address, cert=api.cert, key=api.key)
    try:
        yield FeedAuthenticator(service, as_api, bots)
    finally:
        stack.stop_service(service)


@pytest.fixture
async def auth_channel(feed_auth: FeedAuthenticator) -> AsyncIterator[Any]:
    channel = feed_auth.as_api.channel()
    try:
        yield channel
    finally:
        channel.close()


def bot_client(bots: Bots, files: CertificateFiles, port: int) -> BuglessClient:
    return BuglessClient(
        f"127.0.0.1:{port}", cert=files.cert, key=files.key, ca=bots.stack.pki.ca_file, timeout=30
    )


async def test_a_rename_shows_in_the_apis_answers_within_a_poll_long_before_the_cache_time(
    bots: Bots, feed_auth: FeedAuthenticator, auth_channel: Any, connect_as: ConnectAs
) -> None:
    tag = secrets.token_hex(3)
    before, after = f"renamee-{tag}", f"renamed-{tag}"
    files = bots.stack.add_bot(before)
    async with extra_api(
        bots, auth=feed_auth.as_api, user_cache_seconds=LONG_CACHE, user_changes_seconds=0.2
    ) as api:
        async with bot_client(bots, files, api.port) as renamee:
            await renamee.whoami()  # the Authenticator makes the user
        robot = connect_as("robot", port=api.port)
        component = await robot.create_component(f"Renames-{tag}")
        issue = await robot.create_issue("Renamed assignee", component.id, assignee=before)
        # Until the Authenticator's own cache has applied the feed as far as
        # the API has, its answers are used once, not kept (they may predate
        # a change the API has seen): the renamee's creation, just now.
        auth = v1.AuthenticatorStub(auth_channel)
        await caught_up(auth, await feed_head(auth))
        assert (await robot.get_issue(issue.id)).assignee == before
        asked = await feed_auth.calls("GetUsers")
        assert (await robot.get_issue(issue.id)).assignee == before
        assert await feed_auth.calls("GetUsers") == asked, "kept: nobody changed"

        await feed_auth.rename(files, after)

        async def renamed() -> bool:
            return (await robot.get_issue(issue.id)).assignee == after

        await eventually(renamed, "GetIssue names the assignee by the new name")
        found = await robot.search_issues(f"assignee:{after} c:{component.id}")
        assert [i.id for i in found.issues] == [issue.id], "the new name is accepted"


async def test_the_feed_is_read_while_serving_not_after_close_and_never_with_0(
    bots: Bots, feed_auth: FeedAuthenticator, connect_as: ConnectAs
) -> None:
    async with extra_api(
        bots, auth=feed_auth.as_api, user_cache_seconds=LONG_CACHE, user_changes_seconds=0.1
    ) as following:
        robot = connect_as("robot", port=following.port)
        component = await robot.create_component(f"Feed-{secrets.token_hex(3)}")
        issue = await robot.create_issue("Seen", component.id, assignee="robot")
        await robot.get_issue(issue.id)
        polls = await feed_auth.calls("GetUserChanges")

        async def polled_again() -> bool:
            return await feed_auth.calls("GetUserChanges") >= polls + 3

        await eventually(polled_again, "the API reads the feed every 0.1 s")
    closed = await feed_auth.calls("GetUserChanges")
    await asyncio.sleep(QUIET_SECONDS)
    assert await feed_auth.calls("GetUserChanges") == closed, "stopped on close"

    async with extra_api(
        bots, auth=feed_auth.as_api, user_cache_seconds=LONG_CACHE, user_changes_seconds=0
    ) as never:
        robot = connect_as("robot", port=never.port)
        asked = await feed_auth.calls("GetUsers")
        for _ in range(3):
            assert (await robot.get_issue(issue.id)).assignee == "robot"
        await asyncio.sleep(QUIET_SECONDS)
        assert await feed_auth.calls("GetUsers") == asked + 1, "kept --user-cache-seconds"
        assert await feed_auth.calls("GetUserChanges") == closed, "never read"


class HeldReplies:
    """The real Authenticator, whose GetUsers replies are held while ``release`` is clear.

    The reply is read first and handed back only on release: a read that
    began before a change and ends after it.
    """

    def __init__(self, stub: v1.AuthenticatorStub) -> None:
        self.stub = stub
        self.answered = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()
        self.get_users_calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stub, name)

    async def get_users(self, request: v1.GetUsersRequest, **kwargs: Any) -> v1.UsersResponse:
        self.get_users_calls += 1
        reply = await self.stub.get_users(request, **kwargs)
        self.answered.set()
        await self.release.wait()
        return reply


async def feed_head(auth: v1.AuthenticatorStub) -> int:
    reply = await call(auth.get_user_changes, v1.GetUserChangesRequest(after_version=0))
    return reply.version


async def caught_up(auth: v1.AuthenticatorStub, version: int) -> None:
    """Wait until the Authenticator answers at ``version`` (its own poll of the feed)."""

    async def answers_at_version() -> bool:
        reply = await call(auth.get_users, v1.GetUsersRequest(user_ids=["u_nobody"]))
        return reply.version >= version

    await eventually(answers_at_version, f"the Authenticator applied version {version}")


async def test_a_reply_read_before_a_rename_is_used_once_and_not_kept(
    bots: Bots, feed_auth: FeedAuthenticator, auth_channel: Any
) -> None:
    """The race: GetUsers answered before the rename, handed back after the feed applied it."""
    name = f"raced-{secrets.token_hex(3)}"
    files = bots.stack.add_bot(name)
    user_id = await feed_auth.rename(files, name)
    held = HeldReplies(v1.AuthenticatorStub(auth_channel))
    # Polled by hand below: the follower's own first poll starts it, then waits a minute.
    users = UserDirectory(
        cast("v1.AuthenticatorStub", held),
        timeout_seconds=30,
        cache_seconds=LONG_CACHE,
        changes_seconds=60,
    )
    try:
        await users.cache.poll_changes()
        held.release.clear()
        naming = asyncio.ensure_future(users.usernames_by_id([user_id]))
        await asyncio.wait_for(held.answered.wait(), timeout=60)  # the old name, held

        await feed_auth.rename(files, f"{name}-renamed")
        changed_at = await feed_head(held.stub)
        while users.cache.following.version < changed_at:
            await users.cache.poll_changes()
        held.release.set()

        assert await naming == {user_id: name}, "the held answer serves the call that asked"
        calls = held.get_users_calls

        async def renamed() -> bool:
            found = await users.usernames_by_id([user_id])
            return found == {user_id: f"{name}-renamed"}

        await eventually(renamed, "the new name, once the Authenticator applied the rename")
        assert held.get_users_calls > calls, "the held answer was not kept: asked again"
    finally:
        users.close()


class SwitchableFeed:
    """The real Authenticator, whose GetUserChanges goes to a dead address while ``down``."""

    def __init__(self, stub: v1.AuthenticatorStub, dead: v1.AuthenticatorStub) -> None:
        self.stub = stub
        self.dead = dead
        self.down = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stub, name)

    async def get_user_changes(
        self, request: v1.GetUserChangesRequest, **kwargs: Any
    ) -> v1.UserChanges:
        target = self.dead if self.down else self.stub
        return await target.get_user_changes(request, **kwargs)


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_without_the_feed_people_are_kept_the_short_ttl_only(
    bots: Bots, feed_auth: FeedAuthenticator, auth_channel: Any
) -> None:
    name = f"dora-{secrets.token_hex(3)}"
    user_id = await feed_auth.rename(bots.stack.add_bot(name), name)
    dead_channel = ServiceAddress("127.0.0.1", 1).channel()
    feed = SwitchableFeed(v1.AuthenticatorStub(auth_channel), v1.AuthenticatorStub(dead_channel))
    held = HeldReplies(cast("v1.AuthenticatorStub", feed))
    clock = Clock()
    ttl = 5.0
    users = UserDirectory(
        cast("v1.AuthenticatorStub", held),
        timeout_seconds=5,
        cache_seconds=ttl,
        changes_seconds=ttl - 1,  # its follower polls too: harmless, on this clock
        clock=clock,
    )
    try:
        await users.cache.poll_changes()
        await caught_up(feed.stub, users.cache.following.version)
        await users.usernames_by_id([user_id])
        clock.now += ttl - 1
        await users.cache.poll_changes()
        feed.down = True  # the feed was last read at this moment
        clock.now += ttl - 1  # stored 8 s ago, the feed read 4 s ago: kept
        await users.usernames_by_id([user_id])
        assert held.get_users_calls == 1

        with pytest.raises(Unavailable):
            await users.cache.poll_changes()
        clock.now += 1.5  # the feed last read 5.5 s ago: the short TTL rules again
        await users.usernames_by_id([user_id])
        assert held.get_users_calls == 2
        clock.now += ttl - 1
        await users.usernames_by_id([user_id])
        assert held.get_users_calls == 2, "kept its short TTL"
        clock.now += 1.1
        await users.usernames_by_id([user_id])
        assert held.get_users_calls == 3
    finally:
        users.close()
        dead_channel.close()


FEED_READ = "bugless_user_feed_last_read_timestamp_seconds"


async def scrape(metrics_port: int) -> dict[str, float]:
    """The unlabelled samples a ``/metrics`` endpoint serves, by name."""
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5.0)
    response.raise_for_status()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if not sample.labels
    }


async def test_the_apis_metrics_show_when_it_last_read_the_feed(
    bots: Bots, connect_as: ConnectAs
) -> None:
    """``bugless api serve --metrics-port``: absent until the follower starts, then each read."""
    stack = bots.stack
    args = [*stack.backend_flags(), *stack.api_tls_flags(), "--port", "0", "--metrics-port", "0"]
    feed = ["--user-cache-seconds", str(LONG_CACHE), "--user-changes-seconds", "0.1"]
    api = stack.start("api", ["api", "serve", *args, *feed], name="api-feed-metrics")
    try:
        assert api.metrics_port is not None
        assert FEED_READ not in await scrape(api.metrics_port), "no look-up yet: not following"
        robot = connect_as("robot", port=api.port)
        component = await robot.create_component(f"FeedMetrics-{secrets.token_hex(3)}")
        issue = await robot.create_issue("Read the feed", component.id, assignee="robot")
        assert (await robot.get_issue(issue.id)).assignee == "robot"
        looked_up = time.time()

        async def read_since_look_up() -> bool:
            return (await scrape(api.metrics_port or 0)).get(FEED_READ, 0.0) >= looked_up

        await eventually(read_since_look_up, "the API read the feed after the look-up")
        assert (await scrape(api.metrics_port))[FEED_READ] <= time.time()
    finally:
        stack.stop_service(api)


async def test_an_authenticator_polling_too_rarely_for_the_ttl_is_one_warning_naming_both(
    bots: Bots,
    feed_auth: FeedAuthenticator,
    connect_as: ConnectAs,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An API with a 3 s TTL reading every 0.5 s, on an Authenticator process reading every 5 s.

    Its first read of the feed logs one warning with both settings, the
    figures and what to set; later reads add none. The people it shows stay
    right (kept the TTL). The same API settings on an Authenticator reading
    every second (1 + 0.5 < 3): no warning.
    """
    caplog.set_level(logging.WARNING, logger="bugless.user_cache")
    stack = bots.stack
    slow = stack.start(
        "auth",
        ["auth", "serve", "--port", "0", "--metrics-port", "0", "--user-changes-seconds", "5"],
        name="auth-slow-feed",
    )
    assert slow.address is not None
    api_identity = stack.identities["api"]
    slow_auth = FeedAuthenticator(
        slow,
        dataclasses.replace(slow.address, cert=api_identity.cert, key=api_identity.key),
        bots,
    )
    ttl = {"user_cache_seconds": 3.0, "user_changes_seconds": 0.5}

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "bugless.user_cache"]

    async def polled(auth: FeedAuthenticator, times: int) -> Callable[[], Awaitable[bool]]:
        since = await auth.calls("GetUserChanges")

        async def check() -> bool:
            return await auth.calls("GetUserChanges") >= since + times

        return check

    try:
        async with extra_api(bots, auth=slow_auth.as_api, **ttl) as api:
            robot = connect_as("robot", port=api.port)
            component = await robot.create_component(f"SlowFeed-{secrets.token_hex(3)}")
            issue = await robot.create_issue("Slow feed", component.id, assignee="robot")
            assert (await robot.get_issue(issue.id)).assignee == "robot"  # starts the follower
            await eventually(await polled(slow_auth, 4), "the API read the feed 4 times")
            assert (await robot.get_issue(issue.id)).assignee == "robot"
    finally:
        stack.stop_service(slow)
    assert warnings() == [
        "the Authenticator reads the users' change feed every 5 s (its --user-changes-seconds) "
        "and this frontend every 0.5 s (--user-changes-seconds): a read is up to 5.5 s old, not "
        "below --user-cache-seconds (3 s), so people kept longer than 3 s are often read again "
        "as if there were no feed; set the Authenticator's --user-changes-seconds below 2.5, or "
        "--user-cache-seconds here above 5.5"
    ]

    caplog.clear()
    async with extra_api(bots, auth=feed_auth.as_api, **ttl) as api:
        robot = connect_as("robot", port=api.port)
        assert (await robot.get_issue(issue.id)).assignee == "robot"
        await eventually(await polled(feed_auth, 4), "the API read the feed 4 times")
    assert warnings() == []
