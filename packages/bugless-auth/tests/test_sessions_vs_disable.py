"""Sessions and certificates recorded while their user is disabled: none outlives the disable.

Real PostgreSQL and real Authenticators over real gRPC. Disabling a user
commits ``disabled`` on their row, then ends their sessions and revokes their
people-CA certificates. Whatever a replica decided from before that (its
cached record, a sign-in's own read) must not record a session or a
certificate the disable's ends missed: the insert checks the user's row,
locked against the disable. The tests force the orders with real locks held
from a second connection to the replicas' schema:

* the insert waits (a table lock) until the disable has committed and ended
  the user's sessions and certificates: it must be refused;
* the disable's row lock is taken first, the insert waits on it: refused;
* the insert's side holds the row first, the disable waits: the disable
  then ends what was recorded;

and a last test races them freely, many rounds, and then reads the tables.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable
from typing import Any, TypeVar

import asyncpg
from auth_support import (
    LIVE_CERTIFICATES,
    LIVE_SESSIONS,
    PASSWORD,
    WAITERS,
    AuthServer,
    person_csr,
    unique,
)
from grpc_errors import expect_status
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from bugless_auth import _queries as sql
from bugless_auth import _session_queries as session_sql
from bugless_auth.placeholders import match_people, merge_placeholder
from bugless_auth.store import UserRecord
from bugless_auth.user_writes import UserWrites
from bugless_core.usernames import username_key
from bugless_proto import v1
from bugless_testing.polling import eventually

T = TypeVar("T")

#: What the disable revokes of a person's certificates (``PeopleCertificates.revoke_user``).
REVOKE_CERTIFICATES = """
UPDATE people_certificates SET revoked_at = now(), revoked_by = 'test', revoked_reason = 'test'
 WHERE user_id = $1 AND revoked_at IS NULL AND not_after > now()
"""
LIVE_SESSIONS_OF_ANY = """
SELECT user_id, count(*) FROM sessions
 WHERE user_id = ANY($1::text[]) AND revoked_at IS NULL AND expires_at > now()
 GROUP BY user_id
"""


async def disable_as_the_service_does(connection: asyncpg.Connection, user: UserRecord) -> None:
    """The disable's steps on ``connection``: the row and the feed, the sessions, the certificates.

    ``SetUserDisabled`` commits the first and runs the others after; here
    they run in the caller's transaction (which may hold a lock the
    Authenticator waits on), so they are all done before it goes on.
    """
    writes = UserWrites(connection)
    await writes.fetchrow(sql.SET_DISABLED, username_key(user.username), True)
    await writes.log()
    await connection.execute(session_sql.REVOKE_USER, user.user_id, "disabled by the test")
    await connection.execute(REVOKE_CERTIFICATES, user.user_id)


async def live(connection: asyncpg.Connection, user: UserRecord) -> tuple[int, int]:
    """The user's live sessions and live certificates, as the database has them."""
    sessions = await connection.fetchval(LIVE_SESSIONS, user.user_id)
    certificates = await connection.fetchval(LIVE_CERTIFICATES, user.user_id)
    return int(sessions), int(certificates)


async def waiting(connection: asyncpg.Connection, what: str) -> None:
    """Until one statement waits for a lock ``connection`` holds."""

    async def one_waits() -> bool:
        return len(await connection.fetch(WAITERS, connection.get_server_pid())) == 1

    await eventually(one_waits, f"{what} waits for the test's lock")


async def inserted_after_the_disable(
    connection: asyncpg.Connection, table: str, user: UserRecord, call: Awaitable[T]
) -> T:
    """Run ``call`` with its insert into ``table`` held until ``user`` is disabled and ended.

    Whatever ``call`` read before its insert (the user enabled) predates the
    disable: the vulnerable order.
    """
    async with connection.transaction():
        await connection.execute(f"LOCK TABLE {table} IN SHARE MODE")
        task = asyncio.ensure_future(call)
        try:
            await waiting(connection, f"the insert into {table}")
            await disable_as_the_service_does(connection, user)
        except BaseException:
            task.cancel()
            raise
    return await task


async def refused_as_written_after_the_disable(
    connection: asyncpg.Connection,
    table: str,
    user: UserRecord,
    call: Awaitable[Any],
    status: Status,
) -> GRPCError:
    """``call``, its insert held past the disable, fails with ``status`` and leaves nothing live.

    Returns:
        The error, for its message.
    """
    refused = await expect_status(inserted_after_the_disable(connection, table, user, call), status)
    assert await live(connection, user) == (0, 0)
    return refused


async def test_a_replica_that_has_not_heard_of_a_disable_issues_no_assertion(
    two_replicas: tuple[AuthServer, AuthServer], lock_connection: asyncpg.Connection
) -> None:
    """Disabled through one replica; the other's cache still has them enabled: refused.

    Before, the replica decided on its cached record and recorded a session
    after the disable had ended the user's: the assertion stayed good for
    its lifetime (300 s), and nothing ended it.
    """
    first, second = two_replicas
    admin = await first.add_user(unique("adm"), groups=["admins"])
    bob = await first.add_user(unique("bob"))
    seen = await second.stub.get_users(v1.GetUsersRequest(user_ids=[bob.user_id]))
    assert not seen.users[0].disabled
    signed_in = await first.sign_in(admin.username)
    await first.stub.set_user_disabled(
        v1.SetUserDisabledRequest(token=signed_in.token, username=bob.username, disabled=True)
    )
    stale = await second.stub.get_users(v1.GetUsersRequest(user_ids=[bob.user_id]))
    assert not stale.users[0].disabled, "the second replica heard of the disable: no test"

    refused = await expect_status(
        second.stub.issue_assertion(v1.IssueAssertionRequest(user_id=bob.user_id)),
        Status.PERMISSION_DENIED,
    )
    assert refused.message == f"user {bob.user_id!r} is disabled: no assertion is issued"
    assert await live(lock_connection, bob) == (0, 0)


async def test_a_merged_placeholders_assertion_is_its_accounts_session_and_ends_with_it(
    two_replicas: tuple[AuthServer, AuthServer], lock_connection: asyncpg.Connection
) -> None:
    """A placeholder merged into an account answers as it: its session is the account's.

    Before, it was recorded under the placeholder's id, which disabling the
    account (ending the account's sessions) never reached: the assertion
    outlived the disable. A placeholder merged into nobody gets none.
    """
    first, second = two_replicas
    admin = await first.add_user(unique("adm"), groups=["admins"])
    bob = await first.add_user(unique("bob"))
    people = [v1.SourcePerson(key=unique("k"), username=unique("p")) for _ in range(2)]
    matched = await match_people(first.store, "trac", people, create_placeholders=True)
    merged, unmerged = (m.user for m in matched)
    assert merged is not None
    assert unmerged is not None
    await merge_placeholder(first.store, merged.username, bob.username)

    issued = await second.stub.issue_assertion(v1.IssueAssertionRequest(user_id=merged.user_id))
    assert issued.user is not None
    assert issued.user.user_id == merged.user_id  # who the history names
    owners = await lock_connection.fetch(LIVE_SESSIONS_OF_ANY, [bob.user_id, merged.user_id])
    assert [tuple(row) for row in owners] == [(bob.user_id, 1)]
    refused = await expect_status(
        second.stub.issue_assertion(v1.IssueAssertionRequest(user_id=unmerged.user_id)),
        Status.PERMISSION_DENIED,
    )
    assert refused.message == f"user {unmerged.user_id!r} is a placeholder: no assertion is issued"

    token = (await first.sign_in(admin.username)).token
    await first.stub.set_user_disabled(
        v1.SetUserDisabledRequest(token=token, username=bob.username, disabled=True)
    )
    stale = await second.stub.get_users(v1.GetUsersRequest(user_ids=[merged.user_id]))
    assert not stale.users[0].disabled, "the second replica heard of the disable: no test"
    refused = await expect_status(
        second.stub.issue_assertion(v1.IssueAssertionRequest(user_id=merged.user_id)),
        Status.PERMISSION_DENIED,
    )
    assert refused.message == f"user {merged.user_id!r} is disabled: no assertion is issued"
    assert await lock_connection.fetch(LIVE_SESSIONS_OF_ANY, [bob.user_id, merged.user_id]) == []


async def test_an_assertion_recorded_after_the_disable_ended_the_sessions_is_refused(
    two_replicas: tuple[AuthServer, AuthServer], lock_connection: asyncpg.Connection
) -> None:
    """The replica decided on its cache, then its insert came after the disable and its ends."""
    _, second = two_replicas
    bob = await second.add_user(unique("bob"))
    await second.stub.get_users(v1.GetUsersRequest(user_ids=[bob.user_id]))  # cached, enabled
    call = second.stub.issue_assertion(v1.IssueAssertionRequest(user_id=bob.user_id))
    refused = await refused_as_written_after_the_disable(
        lock_connection, "sessions", bob, call, Status.PERMISSION_DENIED
    )
    assert refused.message == f"user {bob.user_id!r} is disabled: no assertion is issued"


async def test_a_sign_in_recorded_after_the_disable_ended_the_sessions_is_refused(
    two_replicas: tuple[AuthServer, AuthServer], lock_connection: asyncpg.Connection
) -> None:
    """The sign-in read the user enabled, then its session's insert came after the disable."""
    first, _ = two_replicas
    bob = await first.add_user(unique("bob"))
    call = first.stub.authenticate_password(
        v1.AuthenticatePasswordRequest(username=bob.username, password=PASSWORD)
    )
    refused = await refused_as_written_after_the_disable(
        lock_connection, "sessions", bob, call, Status.UNAUTHENTICATED
    )
    assert "disabled" in (refused.message or "")


async def test_a_certificate_recorded_after_the_disable_revoked_the_others_is_refused(
    two_replicas: tuple[AuthServer, AuthServer], lock_connection: asyncpg.Connection
) -> None:
    """Issuance read the person enabled, then its insert came after the disable's revocation.

    Before, the certificate was recorded live: refused while the person is
    disabled (a sign-in checks the user), it worked again on re-enabling,
    though the disable was to have revoked every certificate of theirs.
    """
    first, _ = two_replicas
    bob = await first.add_user(unique("bob"))
    token = (await first.sign_in(bob.username)).token
    call = first.stub.issue_person_certificate(
        v1.IssuePersonCertificateRequest(token=token, csr_pem=person_csr())
    )
    refused = await refused_as_written_after_the_disable(
        lock_connection, "people_certificates", bob, call, Status.PERMISSION_DENIED
    )
    assert refused.message == f"{bob.username} is disabled: no certificate is issued"


async def test_an_assertion_waiting_for_the_disables_row_lock_is_refused(
    two_replicas: tuple[AuthServer, AuthServer], lock_connection: asyncpg.Connection
) -> None:
    """The disable's UPDATE holds the user's row; the assertion's insert waits, then sees it.

    At READ COMMITTED the insert re-reads the row the disable left; at
    SERIALIZABLE (the cockroach dialect) it fails with 40001 and runs again.
    """
    _, second = two_replicas
    bob = await second.add_user(unique("bob"))
    await second.stub.get_users(v1.GetUsersRequest(user_ids=[bob.user_id]))
    async with lock_connection.transaction():
        writes = UserWrites(lock_connection)
        await writes.fetchrow(sql.SET_DISABLED, username_key(bob.username), True)
        await writes.log()
        task = asyncio.ensure_future(
            second.stub.issue_assertion(v1.IssueAssertionRequest(user_id=bob.user_id))
        )
        await waiting(lock_connection, "the session's insert")
    await lock_connection.execute(session_sql.REVOKE_USER, bob.user_id, "disabled by the test")
    await expect_status(task, Status.PERMISSION_DENIED)
    assert await live(lock_connection, bob) == (0, 0)


async def test_a_disable_waiting_for_a_recorded_sessions_row_lock_then_ends_it(
    two_replicas: tuple[AuthServer, AuthServer], lock_connection: asyncpg.Connection
) -> None:
    """The user's row is share-locked first (as an insert holds it): the disable waits, then ends.

    The lock is the one a session's insert takes; held here so that the
    assertion is recorded while the disable's UPDATE waits behind it.
    """
    first, second = two_replicas
    admin = await first.add_user(unique("adm"), groups=["admins"])
    bob = await first.add_user(unique("bob"))
    token = (await first.sign_in(admin.username)).token
    async with lock_connection.transaction():
        await lock_connection.execute(
            "SELECT 1 FROM users WHERE user_id = $1 FOR SHARE", bob.user_id
        )
        disable = asyncio.ensure_future(
            first.stub.set_user_disabled(
                v1.SetUserDisabledRequest(token=token, username=bob.username, disabled=True)
            )
        )
        await waiting(lock_connection, "the disable")
        issued = await second.stub.issue_assertion(v1.IssueAssertionRequest(user_id=bob.user_id))
        assert issued.assertion
    assert (await disable).disabled
    assert await live(lock_connection, bob) == (0, 0)


async def test_disables_racing_assertions_and_sign_ins_leave_no_live_session(
    two_replicas: tuple[AuthServer, AuthServer], lock_connection: asyncpg.Connection
) -> None:
    """Many rounds, each a user disabled on one replica while the other issues and signs in.

    Each issued assertion or token is either refused or has its session
    ended by the disable: at the end no disabled user has a live session.
    """
    first, second = two_replicas
    admin = await first.add_user(unique("adm"), groups=["admins"])
    token = (await first.sign_in(admin.username)).token
    rounds, outcomes = 30, {"issued": 0, "refused": 0}
    refusals: list[Status] = []
    users = [await first.add_user(unique("race")) for _ in range(rounds)]
    for user in users:
        await second.stub.get_users(v1.GetUsersRequest(user_ids=[user.user_id]))

    async def attempt(call: Awaitable[Any]) -> None:
        await asyncio.sleep(random.uniform(0, 0.03))
        try:
            await call
        except GRPCError as exc:
            refusals.append(exc.status)
            outcomes["refused"] += 1
        else:
            outcomes["issued"] += 1

    async def disable(user: UserRecord) -> None:
        await asyncio.sleep(random.uniform(0, 0.03))
        request = v1.SetUserDisabledRequest(token=token, username=user.username, disabled=True)
        assert (await first.stub.set_user_disabled(request)).disabled

    for user in users:
        assertion = v1.IssueAssertionRequest(user_id=user.user_id)
        await asyncio.gather(
            disable(user),
            *(attempt(second.stub.issue_assertion(assertion)) for _ in range(3)),
            attempt(second.sign_in(user.username)),
        )
    for user in users:
        assert await live(lock_connection, user) == (0, 0), user.username
    assert outcomes["issued"] + outcomes["refused"] == 4 * rounds
    assert set(refusals) <= {Status.PERMISSION_DENIED, Status.UNAUTHENTICATED}
    print(f"racing disables: {outcomes}")
