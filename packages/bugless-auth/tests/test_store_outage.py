"""A connection the server ends mid-call is UNAVAILABLE, and the next call works.

The Authenticator's store and the Model's backends share one list of what
"the database cannot be reached" means (``bugless_core.database_errors``):
here ``pg_terminate_backend`` of the store's connection while a real gRPC
call waits on it. asyncpg reports that as 08003 ("connection was closed in
the middle of operation: terminating connection due to administrator
command"); the server's 57P01 itself, which reaches a caller only when the
FATAL is read as a statement's answer, is in the same list
(``packages/bugless-core/tests/test_database_errors.py``).
"""

from __future__ import annotations

import asyncio

import asyncpg
from auth_support import AuthServer, unique
from grpc_errors import expect_status
from grpclib.const import Status

from bugless_proto import v1

#: The backend of a statement of this database waiting on a lock.
WAITING = """
SELECT pid FROM pg_stat_activity
 WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()
"""


async def test_a_connection_terminated_mid_call_is_unavailable(auth: AuthServer) -> None:
    user = await auth.add_user(unique("after"))
    blocker = await asyncpg.connect(auth.settings.database_url)
    try:
        schema = auth.settings.schema
        blocking = blocker.transaction()
        await blocking.start()
        await blocker.execute(f'LOCK TABLE "{schema}".users IN ACCESS EXCLUSIVE MODE')
        call = asyncio.create_task(
            expect_status(
                auth.stub.lookup_users(v1.LookupUsersRequest(usernames=[unique("never")])),
                Status.UNAVAILABLE,
            )
        )
        for _ in range(200):
            waiting = await blocker.fetch(WAITING)
            if waiting:
                break
            await asyncio.sleep(0.05)
        assert len(waiting) == 1, waiting
        assert await blocker.fetchval("SELECT pg_terminate_backend($1)", waiting[0]["pid"])
        error = await asyncio.wait_for(call, timeout=10)
        await blocking.rollback()
    finally:
        await blocker.close()
    assert error.message is not None
    assert error.message.startswith("the Authenticator's database cannot be reached now ("), (
        error.message
    )
    # The pool drops the dead connection and opens another.
    answer = await auth.stub.lookup_users(v1.LookupUsersRequest(usernames=[user.username]))
    assert [found.user_id for found in answer.users] == [user.user_id]


async def test_a_statement_the_server_gave_up_on_is_unavailable(auth: AuthServer) -> None:
    # An operator's pg_cancel_backend of a statement waiting on a lock (57014, as
    # statement_timeout gives; lock_timeout gives 55P03): the database is busy,
    # not the Authenticator wrong, so UNAVAILABLE rather than INTERNAL.
    user = await auth.add_user(unique("busy"))
    blocker = await asyncpg.connect(auth.settings.database_url)
    try:
        blocking = blocker.transaction()
        await blocking.start()
        await blocker.execute(f'LOCK TABLE "{auth.settings.schema}".users IN ACCESS EXCLUSIVE MODE')
        call = asyncio.create_task(
            expect_status(
                auth.stub.lookup_users(v1.LookupUsersRequest(usernames=[unique("never")])),
                Status.UNAVAILABLE,
            )
        )
        for _ in range(200):
            waiting = await blocker.fetch(WAITING)
            if waiting:
                break
            await asyncio.sleep(0.05)
        assert len(waiting) == 1, waiting
        assert await blocker.fetchval("SELECT pg_cancel_backend($1)", waiting[0]["pid"])
        error = await asyncio.wait_for(call, timeout=10)
        await blocking.rollback()
    finally:
        await blocker.close()
    assert error.message is not None
    assert error.message.startswith(
        "the Authenticator's database gave up on a statement (QueryCanceledError: "
    ), error.message
    # The connection was fine all along.
    answer = await auth.stub.lookup_users(v1.LookupUsersRequest(usernames=[user.username]))
    assert [found.user_id for found in answer.users] == [user.user_id]
