"""LDAP provider + read replica behind the real Authenticator, over gRPC.

Two real slapd (see slapd_replica.py): the provider is listed first, the
syncrepl consumer second, as a deployment lists them. Tests hang the provider
with SIGSTOP (the kernel still accepts connections and nobody answers: the
worst case for a client) or kill it with SIGKILL, and sign in through the
Authenticator's gRPC service as a frontend does.

Which server served a sign-in is read from the servers themselves: each logs
its operations (a bind as the user shows who checked the password), and a
hung provider's listen queue counts every client that tried to reach it.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import TYPE_CHECKING

import pytest
from grpc_errors import expect_status
from grpclib.const import Status

from bugless_proto import v1
from bugless_testing.slapd import PEOPLE_DN, READER_DN, READER_PASSWORD, ssha
from bugless_testing.slapd_replica import ReplicaPair

if TYPE_CHECKING:
    from auth_support import AuthServer, StartAuth

# The fixtures of slapd_replica.py (until conftest.py lists it in pytest_plugins).

ALICE_DN = f"uid=alice,{PEOPLE_DN}"


def ldap_options(pair: ReplicaPair, **overrides: str) -> dict[str, str]:
    """Options as a deployment sets them (strings, as from BUGLESS_AUTH_LDAP_*).

    The timeouts are how long a sign-in waits on the hung provider before it
    asks the replica; they also bound the replica's own answer, so they leave
    room for a loaded CI machine (its parallel sessions have stalled this
    process's event loop for over a second, and a 1 s timeout then failed
    the healthy replica too: "the LDAP directory at <both> is unreachable").
    """
    return {
        "urls": ",".join(pair.urls),
        "base_dn": PEOPLE_DN,
        "bind_dn": READER_DN,
        "bind_password": READER_PASSWORD,
        "connect_timeout": "3",
        "operation_timeout": "3",
        "server_retry_seconds": "0.2",
        **overrides,
    }


async def start_with_replicas(
    start_auth_server: StartAuth, pair: ReplicaPair, **overrides: str
) -> AuthServer:
    return await start_auth_server(
        authenticators=("ldap",), authenticator_options={"ldap": ldap_options(pair, **overrides)}
    )


def user_of(result: v1.AuthenticationResult) -> v1.User:
    assert result.token
    assert result.identity is not None
    assert result.identity.user is not None
    return result.identity.user


async def add_person(pair: ReplicaPair, password: str) -> str:
    """Add a user of the test's own on the provider; wait until the replica has them."""
    uid = f"rep-{secrets.token_hex(3)}"
    ldif = (
        f"dn: uid={uid},{PEOPLE_DN}\nobjectClass: inetOrgPerson\nuid: {uid}\n"
        f"cn: {uid}\nsn: {uid}\ndisplayName: {uid.title()}\nmail: {uid}@bugless.test\n"
        f"userPassword: {ssha(password)}\n"
    )
    await asyncio.to_thread(pair.provider.ldapadd, ldif)
    await pair.await_replicated()
    return uid


async def sign_in_until_served_by_provider(auth: AuthServer, pair: ReplicaPair) -> int:
    """Sign alice in until the provider checks her password; the attempts it took.

    The provider rejoins when a background probe finds it answering, which
    happens on the probe's schedule, so the test asks repeatedly (every sign-in
    must succeed meanwhile) rather than guessing a delay.
    """
    before = pair.provider.binds_as(ALICE_DN)
    for attempt in range(1, 101):
        assert user_of(await auth.sign_in("alice", "alice-pw")).username == "alice"
        if pair.provider.binds_as(ALICE_DN) > before:
            return attempt
        await asyncio.sleep(0.05)
    pytest.fail(f"the provider served no sign-in in 100 attempts: {pair.provider.log}")


async def test_both_servers_up_the_provider_serves_sign_ins(
    replicas: ReplicaPair, start_auth_server: StartAuth
) -> None:
    auth = await start_with_replicas(start_auth_server, replicas)
    on_provider = replicas.provider.binds_as(ALICE_DN)
    on_replica = replicas.consumer.binds_as(ALICE_DN)

    user = user_of(await auth.sign_in("alice", "alice-pw"))

    assert user.username == "alice"
    assert replicas.provider.binds_as(ALICE_DN) == on_provider + 1
    assert replicas.consumer.binds_as(ALICE_DN) == on_replica


async def test_the_replica_serves_the_same_identity_and_groups(
    replicas: ReplicaPair, start_auth_server: StartAuth
) -> None:
    auth = await start_with_replicas(start_auth_server, replicas)
    from_provider = await auth.sign_in("alice", "alice-pw")
    replicas.provider.kill()

    from_replica = await auth.sign_in("alice", "alice-pw")

    assert user_of(from_replica).user_id == user_of(from_provider).user_id
    assert from_replica.identity is not None
    assert set(from_replica.identity.groups) >= {"admins", "engineers"}  # memberOf replicated


async def test_sign_ins_skip_a_hung_provider_once_it_failed(
    replicas: ReplicaPair, start_auth_server: StartAuth
) -> None:
    # No probe during the test: every connection attempt the hung provider
    # queues comes from a sign-in.
    auth = await start_with_replicas(start_auth_server, replicas, server_retry_seconds="600")
    assert user_of(await auth.sign_in("alice", "alice-pw")).username == "alice"
    replicas.provider.pause()

    # The first sign-in finds out (its search on the pooled connection times
    # out), and still succeeds; it does not wait again on a fresh connection.
    assert user_of(await auth.sign_in("alice", "alice-pw")).username == "alice"
    tried_provider = replicas.provider.unaccepted_connections()
    assert tried_provider == 0
    on_replica = replicas.consumer.binds_as(ALICE_DN)

    for _ in range(10):
        assert user_of(await auth.sign_in("alice", "alice-pw")).username == "alice"
    await expect_status(auth.sign_in("alice", "wrong"), Status.UNAUTHENTICATED)
    await expect_status(auth.sign_in("nobody-here", "alice-pw"), Status.UNAUTHENTICATED)

    assert replicas.provider.unaccepted_connections() == tried_provider
    assert replicas.consumer.binds_as(ALICE_DN) == on_replica + 11


async def test_a_provider_continued_after_sigstop_serves_again(
    replicas: ReplicaPair, start_auth_server: StartAuth
) -> None:
    auth = await start_with_replicas(start_auth_server, replicas)
    replicas.provider.pause()
    on_replica = replicas.consumer.binds_as(ALICE_DN)
    for _ in range(3):
        assert user_of(await auth.sign_in("alice", "alice-pw")).username == "alice"
    assert replicas.consumer.binds_as(ALICE_DN) == on_replica + 3

    replicas.provider.resume()

    await sign_in_until_served_by_provider(auth, replicas)
    on_replica = replicas.consumer.binds_as(ALICE_DN)
    assert user_of(await auth.sign_in("alice", "alice-pw")).username == "alice"
    assert replicas.consumer.binds_as(ALICE_DN) == on_replica  # back to the provider for good


async def test_a_killed_provider_fails_over_and_serves_again_after_a_restart(
    replicas: ReplicaPair, start_auth_server: StartAuth
) -> None:
    auth = await start_with_replicas(start_auth_server, replicas)
    assert user_of(await auth.sign_in("alice", "alice-pw")).username == "alice"  # pool warm
    replicas.provider.kill()

    on_replica = replicas.consumer.binds_as(ALICE_DN)
    for _ in range(3):
        assert user_of(await auth.sign_in("alice", "alice-pw")).username == "alice"
    await expect_status(auth.sign_in("alice", "wrong"), Status.UNAUTHENTICATED)
    assert replicas.consumer.binds_as(ALICE_DN) == on_replica + 4

    await asyncio.to_thread(replicas.provider.start)

    await sign_in_until_served_by_provider(auth, replicas)


async def test_every_server_down_is_unavailable_not_a_wrong_password(
    replicas: ReplicaPair, start_auth_server: StartAuth
) -> None:
    auth = await start_with_replicas(start_auth_server, replicas)
    replicas.provider.kill()
    replicas.consumer.kill()

    await expect_status(auth.sign_in("alice", "alice-pw"), Status.UNAVAILABLE)
    await expect_status(auth.sign_in("alice", "alice-pw"), Status.UNAVAILABLE)

    await asyncio.to_thread(replicas.consumer.start)
    # Both breakers are open; the servers are still tried as a last resort.
    assert user_of(await auth.sign_in("alice", "alice-pw")).username == "alice"


@pytest.mark.parametrize("outage", ["sigstop", "sigkill"])
async def test_a_password_changed_on_the_provider_is_honoured_by_the_replica(
    replicas: ReplicaPair, start_auth_server: StartAuth, outage: str
) -> None:
    uid = await add_person(replicas, "old-password")
    auth = await start_with_replicas(start_auth_server, replicas)
    before = user_of(await auth.sign_in(uid, "old-password"))

    await asyncio.to_thread(
        replicas.provider.change_password, f"uid={uid},{PEOPLE_DN}", "old-password", "new-password"
    )
    await replicas.await_replicated()
    if outage == "sigstop":
        replicas.provider.pause()
    else:
        replicas.provider.kill()

    after = user_of(await auth.sign_in(uid, "new-password"))
    assert after.user_id == before.user_id
    assert replicas.consumer.binds_as(f"uid={uid},{PEOPLE_DN}") >= 1
    await expect_status(auth.sign_in(uid, "old-password"), Status.UNAUTHENTICATED)


async def test_a_replica_listed_first_honours_a_provider_password_change_once_replicated(
    replicas: ReplicaPair, start_auth_server: StartAuth
) -> None:
    # Reads go to the first healthy server: here the replica, with the
    # provider up. The change is made where writes go, the provider.
    uid = await add_person(replicas, "old-password")
    auth = await start_with_replicas(
        start_auth_server,
        replicas,
        urls=f"{replicas.consumer.url},{replicas.provider.url}",
    )
    dn = f"uid={uid},{PEOPLE_DN}"

    await asyncio.to_thread(replicas.provider.change_password, dn, "old-password", "new-password")
    await replicas.await_replicated()

    assert user_of(await auth.sign_in(uid, "new-password")).username == uid
    await expect_status(auth.sign_in(uid, "old-password"), Status.UNAUTHENTICATED)
    assert replicas.provider.binds_as(dn) == 1  # only the change itself, made as the user
