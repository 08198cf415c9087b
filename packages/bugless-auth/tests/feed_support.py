"""What the tests of the users' change feed share: reading it, and a follower made to read.

``test_user_change_feed`` (the feed and the caches following it),
``test_user_changes_from_memory`` (answers from a follower's memory),
``test_user_feed_lag`` and ``test_user_feed_start`` read the feed and hold its
reads back the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bugless_proto import v1

if TYPE_CHECKING:
    from auth_support import AuthServer

#: Read from pg_locks, afresh by every statement: pg_stat_activity, polled in the
#: lock holder's transaction, is the snapshot of its first read (a backend that
#: connected later is never seen; see auth_support.WAITERS).
LOCK_WAITERS = """
SELECT DISTINCT pid FROM pg_locks
 WHERE NOT granted AND pg_backend_pid() = ANY(pg_blocking_pids(pid))
"""


async def changes_after(auth: AuthServer, version: int) -> v1.UserChanges:
    """``auth``'s GetUserChanges after ``version``."""
    return await auth.stub.get_user_changes(v1.GetUserChangesRequest(after_version=version))


def exact(reply: v1.UserChanges) -> v1.UserChanges:
    """``reply`` without how old an answer from memory is and how often its replica reads."""
    return v1.UserChanges(
        user_ids=list(reply.user_ids), version=reply.version, reset=reply.reset, more=reply.more
    )


async def polled(auth: AuthServer) -> int:
    """Have ``auth``'s follower read the feed to its end now; the head it read."""
    await auth.service.user_feed.poll_once()
    return auth.service.user_feed.recent.head
