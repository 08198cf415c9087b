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
import pytest
from auth_support import AuthServer, unique
from grpc_errors import expect_status
from grpclib.const import Status

from bugless_proto import v1

#: Backends waiting for a lock the connection running this holds (the one the
#: test then ends: never a backend some other lock left waiting).
#: Read from pg_locks, afresh by every statement: pg_stat_activity, polled in the
#: lock holder's transaction, is the snapshot of its first read (a backend that
#: connected later is never seen; see auth_support.WAITERS).
WAITING = """
SELECT DISTINCT pid FROM pg_locks
 WHERE NOT granted AND pg_backend_pid() = ANY(pg_blocking_pids(pid))
"""


@pytest.mark.parametrize(
    ("ending", "message", "after"),
    [
        # The server ends the connection: 08003 through asyncpg. The pool
        # drops the dead connection and opens another.
        (
            "pg_terminate_backend",
            "the Authenticator's database cannot be reached now (",
            "after",
        ),
        # An operator's pg_cancel_backend of a statement waiting on a lock
        # (57014, as statement_timeout gives; lock_timeout gives 55P03): the
        # database is busy, not the Authenticator wrong, so UNAVAILABLE
        # rather than INTERNAL; the connection was fine all along.
        (
            "pg_cancel_backend",
            "the Authenticator's database gave up on a statement (QueryCanceledError: ",
            "busy",
        ),
    ],
    ids=["terminated", "cancelled"],
)
async def test_a_statement_ended_by_the_server_is_unavailable_and_the_next_call_works(
    auth: AuthServer, ending: str, message: str, after: str
) -> None:
    user = await auth.add_user(unique(after))
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
        assert await blocker.fetchval(f"SELECT {ending}($1)", waiting[0]["pid"])
        error = await asyncio.wait_for(call, timeout=10)
        await blocking.rollback()
    finally:
        await blocker.close()
    assert error.message is not None
    assert error.message.startswith(message), error.message
    answer = await auth.stub.lookup_users(v1.LookupUsersRequest(usernames=[user.username]))
    assert [found.user_id for found in answer.users] == [user.user_id]
