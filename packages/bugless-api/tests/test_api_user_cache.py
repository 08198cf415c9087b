"""The short id⇄username cache of the API's user translation.

A counting fake Authenticator runs behind a real grpclib server, so each
assertion counts the calls that actually crossed the wire; time is a fake clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from grpclib.client import Channel
from grpclib.server import Server

from bugless_api._users import UserDirectory, UserRefs
from bugless_api.settings import ApiSettings
from bugless_core.clients import ServiceAddress, resolve_query
from bugless_core.grpc import TransferServerSettings, listening_port
from bugless_core.search import QuerySyntaxError, parse_query
from bugless_proto import v1

TTL = 5.0


class CountingAuthenticator(v1.AuthenticatorBase):
    """Knows a few users by id and name; counts GetUsers and LookupUsers."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.names = {"id-bob": "bob", "id-carol": "carol"}

    async def get_users(self, message: v1.GetUsersRequest) -> v1.UsersResponse:
        self.calls["GetUsers"] += 1
        return v1.UsersResponse(
            users=[
                v1.User(user_id=i, username=self.names[i])
                for i in message.user_ids
                if i in self.names
            ]
        )

    async def lookup_users(self, message: v1.LookupUsersRequest) -> v1.UsersResponse:
        self.calls["LookupUsers"] += 1
        by_name = {name: user_id for user_id, name in self.names.items()}
        return v1.UsersResponse(
            users=[
                v1.User(user_id=by_name[n], username=n) for n in message.usernames if n in by_name
            ]
        )


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    auth: CountingAuthenticator
    channel: Channel
    clock: Clock

    def directory(self, *, cache_seconds: float = TTL, max_entries: int = 100) -> UserDirectory:
        return UserDirectory(
            v1.AuthenticatorStub(self.channel),
            timeout_seconds=5.0,
            cache_seconds=cache_seconds,
            max_entries=max_entries,
            clock=self.clock,
        )


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    auth = CountingAuthenticator()
    server = Server([auth])
    await server.start("127.0.0.1", 0)
    port = listening_port(server)
    channel = Channel("127.0.0.1", port)
    try:
        yield Rig(auth, channel, Clock())
    finally:
        channel.close()
        server.close()
        await server.wait_closed()


async def test_repeated_responses_ask_the_authenticator_once_per_ttl(rig: Rig) -> None:
    users = rig.directory()
    for _ in range(3):
        assert await users.usernames_by_id(["id-bob", "id-carol"]) == {
            "id-bob": "bob",
            "id-carol": "carol",
        }
    assert rig.auth.calls == Counter({"GetUsers": 1})
    rig.clock.now += TTL + 0.1
    await users.usernames_by_id(["id-bob"])
    assert rig.auth.calls == Counter({"GetUsers": 2})


async def test_a_rename_shows_after_the_ttl(rig: Rig) -> None:
    users = rig.directory()
    await users.usernames_by_id(["id-bob"])
    rig.auth.names["id-bob"] = "robert"
    rig.clock.now += TTL - 0.1
    refs = UserRefs()
    issue = v1.Issue(reporter="id-bob")
    refs.issue(issue)
    await users.to_usernames(refs)
    assert issue.reporter == "bob"
    rig.clock.now += 0.2
    assert await users.usernames_by_id(["id-bob"]) == {"id-bob": "robert"}


async def test_only_the_ids_not_cached_are_looked_up(rig: Rig) -> None:
    users = rig.directory()
    await users.usernames_by_id(["id-bob"])
    rig.auth.names["id-bob"] = "robert"  # not asked again: still "bob"
    assert await users.usernames_by_id(["id-bob", "id-carol"]) == {
        "id-bob": "bob",
        "id-carol": "carol",
    }
    assert rig.auth.calls == Counter({"GetUsers": 2})


async def test_both_directions_share_what_was_learnt(rig: Rig) -> None:
    users = rig.directory()
    assert await users.ids_by_username(["Bob"]) == {"bob": "id-bob"}
    assert await users.usernames_by_id(["id-bob"]) == {"id-bob": "bob"}
    await users.usernames_by_id(["id-carol"])
    assert await users.ids_by_username(["carol", "bob"]) == {"carol": "id-carol", "bob": "id-bob"}
    assert rig.auth.calls == Counter({"LookupUsers": 1, "GetUsers": 1})


async def test_an_unknown_id_is_asked_once_per_ttl_and_an_unknown_name_every_time(
    rig: Rig,
) -> None:
    users = rig.directory()
    # An id nobody has (a removed account, an imported author) on every response:
    # the Authenticator is asked once per TTL, not once per response.
    for _ in range(3):
        assert await users.usernames_by_id(["id-dora", "id-bob"]) == {"id-bob": "bob"}
    assert rig.auth.calls == Counter({"GetUsers": 1})
    # A name nobody goes by yet may be someone signing in right now: asked each time.
    assert await users.ids_by_username(["erin"]) == {}
    rig.auth.names.update({"id-dora": "dora", "id-erin": "erin"})
    assert await users.ids_by_username(["erin"]) == {"erin": "id-erin"}
    assert await users.usernames_by_id(["id-dora"]) == {}  # still unknown within the TTL
    rig.clock.now += TTL + 0.1
    assert await users.usernames_by_id(["id-dora"]) == {"id-dora": "dora"}
    assert rig.auth.calls == Counter({"GetUsers": 2, "LookupUsers": 2})


async def test_the_cache_is_bounded(rig: Rig) -> None:
    users = rig.directory(max_entries=1)
    await users.usernames_by_id(["id-bob"])
    await users.usernames_by_id(["id-carol"])  # pushes bob out
    await users.usernames_by_id(["id-carol"])
    assert rig.auth.calls["GetUsers"] == 2
    await users.usernames_by_id(["id-bob"])
    assert rig.auth.calls["GetUsers"] == 3


async def test_a_zero_ttl_asks_every_time(rig: Rig) -> None:
    users = rig.directory(cache_seconds=0.0)
    await users.usernames_by_id(["id-bob"])
    await users.usernames_by_id(["id-bob"])
    assert rig.auth.calls["GetUsers"] == 2


def test_a_negative_ttl_is_refused() -> None:
    address = ServiceAddress("127.0.0.1", 1)
    with pytest.raises(ValueError, match="user_cache_seconds"):
        ApiSettings(
            grpc=TransferServerSettings(
                tls_cert=Path("server.pem"),
                tls_key=Path("server.key"),
                client_ca=Path("ca.pem"),
                insecure_local=True,
            ),
            model=address,
            auth=address,
            user_cache_seconds=-1.0,
        )


async def test_a_repeated_search_resolves_its_people_from_the_cache(rig: Rig) -> None:
    """The API's searches resolve usernames as resolve_query's users_by_name, cached."""
    users = rig.directory()

    async def resolved(text: str) -> str:
        query = await resolve_query(
            parse_query(text),
            v1.AuthenticatorStub(rig.channel),
            me=None,
            users_by_name=users.users_by_name,
        )
        return str(query.filter)

    first = await resolved("assignee:bob is:open")
    assert "id-bob" in first
    assert await resolved("assignee:bob is:open") == first
    assert rig.auth.calls == Counter({"LookupUsers": 1})
    # Someone nobody goes by is asked for every time (a new user is usable at once).
    for _ in range(2):
        with pytest.raises(QuerySyntaxError, match="nobody"):
            await resolved("assignee:nobody")
    assert rig.auth.calls == Counter({"LookupUsers": 3})
    rig.clock.now += TTL + 0.1
    await resolved("assignee:bob")
    assert rig.auth.calls == Counter({"LookupUsers": 4})
