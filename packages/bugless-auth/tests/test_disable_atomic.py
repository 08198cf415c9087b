"""A disable is one transaction: the user's row, their sessions and certificates, or nothing.

Real PostgreSQL, a real Authenticator over real gRPC, the real CLI (a subprocess). Before,
a disable committed ``disabled`` and then ended the user's sessions and
revoked their people-CA certificates in transactions of their own: an
Authenticator (or CLI) that died between them left the sessions live, so
the Model kept taking the assertions already issued for them, and
re-enabling the user brought back their old tokens and certificates.

Here the disable's step on ``sessions`` (or on ``people_certificates``) is
held by a table lock from the test's connection, and its backend is then
terminated with ``pg_terminate_backend``, as a crash or a dropped connection
would end it mid-transaction: nothing of it may remain.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import asyncpg
import pytest
from auth_support import (
    LIVE_CERTIFICATES,
    LIVE_SESSIONS,
    AuthServer,
    UserCommands,
    certificate_der,
    person_csr,
    terminate_the_waiter,
    unique,
)
from grpc_errors import expect_status
from grpclib.const import Status

import bugless_auth
from bugless_auth.store import IdentityStore
from bugless_proto import v1

DISABLED = "SELECT disabled FROM users WHERE user_id = $1"


class Person:
    """A user with two sessions (a sign-in and an assertion's) and a people certificate."""

    def __init__(self, user_id: str, username: str, token: str, certificate_der: bytes) -> None:
        self.user_id = user_id
        self.username = username
        self.token = token
        self.certificate_der = certificate_der


async def person(auth: AuthServer) -> Person:
    user = await auth.add_user(unique("bob"))
    token = (await auth.sign_in(user.username)).token
    await auth.stub.issue_assertion(v1.IssueAssertionRequest(user_id=user.user_id))
    issued = await auth.stub.issue_person_certificate(
        v1.IssuePersonCertificateRequest(token=token, csr_pem=person_csr(), label="laptop")
    )
    return Person(user.user_id, user.username, token, certificate_der(issued.certificate_pem))


async def state(connection: asyncpg.Connection, bob: Person) -> tuple[bool, int, int]:
    """(disabled, live sessions, live certificates) as the database has them."""
    return (
        bool(await connection.fetchval(DISABLED, bob.user_id)),
        int(await connection.fetchval(LIVE_SESSIONS, bob.user_id)),
        int(await connection.fetchval(LIVE_CERTIFICATES, bob.user_id)),
    )


async def signs_in(auth: AuthServer, bob: Person) -> bool:
    """Whether bob's old token and old certificate both still sign him in."""
    token = await auth.stub.validate_token(v1.ValidateTokenRequest(token=bob.token))
    certificate = await auth.stub.authenticate_certificate(
        v1.AuthenticateCertificateRequest(certificate_der=bob.certificate_der)
    )
    signed_in = certificate.identity
    assert token.user is not None
    assert signed_in is not None
    assert signed_in.user is not None
    return token.user.user_id == bob.user_id == signed_in.user.user_id


async def old_credentials_refused(auth: AuthServer, bob: Person) -> None:
    await expect_status(
        auth.stub.validate_token(v1.ValidateTokenRequest(token=bob.token)), Status.UNAUTHENTICATED
    )
    await expect_status(
        auth.stub.authenticate_certificate(
            v1.AuthenticateCertificateRequest(certificate_der=bob.certificate_der)
        ),
        Status.UNAUTHENTICATED,
    )


@pytest.mark.parametrize("table", ["sessions", "people_certificates"])
async def test_a_disable_that_dies_half_way_leaves_the_user_enabled_with_everything_live(
    two_replicas: tuple[AuthServer, AuthServer], lock_connection: asyncpg.Connection, table: str
) -> None:
    """SetUserDisabled's connection is ended at its sessions (or certificates) step: nothing done.

    Before, the user was left disabled with their sessions and certificate
    live: the assertion already issued went on being accepted, and an
    enable brought the old token and certificate back.
    """
    auth = two_replicas[0]
    admin = await auth.add_user(unique("adm"), groups=["admins"])
    admin_token = (await auth.sign_in(admin.username)).token
    bob = await person(auth)
    assert await state(lock_connection, bob) == (False, 2, 1)

    async with lock_connection.transaction():
        # Locked before the disable starts: started first, it could pass the
        # table before the lock is granted (the replicas share this event loop).
        await lock_connection.execute(f"LOCK TABLE {table} IN SHARE MODE")
        disable = asyncio.ensure_future(
            auth.stub.set_user_disabled(
                v1.SetUserDisabledRequest(token=admin_token, username=bob.username, disabled=True)
            )
        )
        try:
            await terminate_the_waiter(
                lock_connection, f"the disable's step on {table} waits for the test's lock"
            )
        except BaseException:
            disable.cancel()
            raise
        failed = await expect_status(disable, Status.UNAVAILABLE)
    assert "retry" in (failed.message or "")

    assert await state(lock_connection, bob) == (False, 2, 1), "a half-done disable"
    answer = await auth.stub.get_users(v1.GetUsersRequest(user_ids=[bob.user_id]))
    assert not answer.users[0].disabled
    assert await signs_in(auth, bob)

    # Retried, it is done whole.
    await auth.stub.set_user_disabled(
        v1.SetUserDisabledRequest(token=admin_token, username=bob.username, disabled=True)
    )
    assert await state(lock_connection, bob) == (True, 0, 0)


async def test_a_disable_ends_everything_and_an_enable_brings_none_of_it_back(
    two_replicas: tuple[AuthServer, AuthServer], lock_connection: asyncpg.Connection
) -> None:
    """Disabled: no live session or certificate, the sessions in the Model's revoked list.

    Re-enabled: still none; the old token and certificate stay refused.
    """
    auth = two_replicas[0]
    admin = await auth.add_user(unique("adm"), groups=["admins"])
    admin_token = (await auth.sign_in(admin.username)).token
    bob = await person(auth)
    sessions = {
        r["session_id"]
        for r in await lock_connection.fetch(
            "SELECT session_id FROM sessions WHERE user_id = $1", bob.user_id
        )
    }
    assert len(sessions) == 2

    await auth.stub.set_user_disabled(
        v1.SetUserDisabledRequest(token=admin_token, username=bob.username, disabled=True)
    )
    assert await state(lock_connection, bob) == (True, 0, 0)
    keys = await auth.stub.get_verification_keys(v1.GetVerificationKeysRequest())
    assert sessions <= set(keys.revoked_session_ids)

    enabled = await auth.stub.set_user_disabled(
        v1.SetUserDisabledRequest(token=admin_token, username=bob.username, disabled=False)
    )
    assert not enabled.disabled
    assert await state(lock_connection, bob) == (False, 0, 0)
    await old_credentials_refused(auth, bob)


async def cli_disable(
    auth: AuthServer, username: str, *, lock_wait_seconds: float | None = None
) -> asyncio.subprocess.Process:
    """``bugless auth user disable USERNAME`` as a subprocess on ``auth``'s schema."""
    wait = [] if lock_wait_seconds is None else ["--lock-wait-seconds", str(lock_wait_seconds)]
    return await UserCommands(auth.cli_env).start("disable", username, *wait)


async def test_the_cli_disable_ends_the_sessions_and_revokes_the_certificates(
    two_replicas: tuple[AuthServer, AuthServer], lock_connection: asyncpg.Connection
) -> None:
    """``bugless auth user disable``: the same one transaction as SetUserDisabled.

    Its ``--lock-wait-seconds`` runs out at the sessions step (the test
    holds the table): the CLI fails and nothing is done. Before, the
    user was left disabled with their sessions live, and the CLI revoked no
    certificates at all (a disabled person's certificate signed them in
    again once they were re-enabled).
    """
    auth = two_replicas[0]
    bob = await person(auth)
    async with lock_connection.transaction():
        await lock_connection.execute("LOCK TABLE sessions IN SHARE MODE")
        process = await cli_disable(auth, bob.username, lock_wait_seconds=1)
        async with asyncio.timeout(180):
            _, stderr = await process.communicate()
    assert process.returncode != 0, "the CLI disabled bob through a locked sessions table"
    assert "nothing was changed" in stderr.decode(), stderr.decode()
    assert await state(lock_connection, bob) == (False, 2, 1), "a half-done disable"

    process = await cli_disable(auth, bob.username)
    async with asyncio.timeout(180):
        _, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    assert await state(lock_connection, bob) == (True, 0, 0)


async def test_the_cli_behind_a_lock_names_its_holder_and_gives_up_having_changed_nothing(
    two_replicas: tuple[AuthServer, AuthServer], lock_connection: asyncpg.Connection
) -> None:
    """``bugless auth user disable`` started while ``sessions`` is locked: visible, then bounded.

    Session 19 saw it "never reach the database and never exit". It had
    reached it: its backend waited on ``sessions``, but ``pg_stat_activity``
    polled in the lock holder's own transaction is a snapshot from the first
    poll, before the CLI connected. And it waited for ever, saying nothing
    (``lock_timeout`` 0), while the test waited for it to exit. Now it names
    the backend holding the lock on stderr and gives up after
    ``--lock-wait-seconds``, its transaction rolled back.
    """
    auth = two_replicas[0]
    bob = await person(auth)
    holder = lock_connection.get_server_pid()
    async with lock_connection.transaction():
        await lock_connection.execute("LOCK TABLE sessions IN SHARE MODE")
        process = await cli_disable(auth, bob.username, lock_wait_seconds=6)
        try:
            async with asyncio.timeout(120):
                _, stderr = await process.communicate()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    said = stderr.decode()
    assert process.returncode == 1, said
    assert f"waiting for a lock another transaction holds: PostgreSQL backend {holder} " in said
    assert "(idle in transaction, its transaction open since" in said
    assert "last statement: LOCK TABLE sessions IN SHARE MODE" in said
    assert "gave up after waiting 6 s for a lock" in said
    assert "nothing was changed" in said
    assert await state(lock_connection, bob) == (False, 2, 1)


@pytest.mark.parametrize("seconds", [0, -1])
async def test_a_lock_wait_that_is_not_positive_is_refused_before_anything_is_done(
    two_replicas: tuple[AuthServer, AuthServer], lock_connection: asyncpg.Connection, seconds: int
) -> None:
    """``--lock-wait-seconds 0`` would be PostgreSQL's "wait for ever": a usage error instead."""
    auth = two_replicas[0]
    bob = await person(auth)
    process = await cli_disable(auth, bob.username, lock_wait_seconds=seconds)
    async with asyncio.timeout(180):
        _, stderr = await process.communicate()
    assert process.returncode == 2, stderr.decode()
    assert "Invalid value for '--lock-wait-seconds'" in stderr.decode()
    assert await state(lock_connection, bob) == (False, 2, 1)


def test_only_the_one_transaction_code_disables_a_row() -> None:
    """No code path can disable a user's row without ending their sessions and certificates.

    ``IdentityStore.set_disabled`` and ``directory_disable`` wrote the row
    alone (kept for tests after f573d0e); they are gone, and the statements
    that disable a row are run by :mod:`bugless_auth.disabling` only.
    """
    assert not hasattr(IdentityStore, "set_disabled")
    assert not hasattr(IdentityStore, "directory_disable")
    package = Path(bugless_auth.__file__).parent
    runs = {
        path.name
        for path in package.rglob("*.py")
        if re.search(r"\b(SET_DISABLED|DIRECTORY_DISABLE)\b", path.read_text(encoding="utf-8"))
    }
    assert runs == {"_queries.py", "disabling.py"}
