"""Disabling a user: their row, the change feed, their sessions and certificates, at once.

A disable used to commit ``disabled`` and then end the user's sessions and
revoke their people-CA certificates in transactions of their own. An
Authenticator that died between them left the sessions live in the
database: the Model kept taking the assertions already issued for them
(it learns of ended sessions from ``GetVerificationKeys``' revoked list),
and a user re-enabled later had their old tokens and certificates back.
Here all of it is one transaction: either the user is disabled and nothing
of theirs is live, or nothing changed.

Locks are taken in the order users row, feed head (the change is logged
before the ends, not as the last statement), sessions, certificates. A
session or certificate insert (:data:`bugless_auth._session_queries.INSERT`,
:meth:`bugless_auth.people.PeopleCertificates.issue`) holds only the user's
row ``FOR SHARE`` and its own new row; no other writer locks sessions or
certificates together with a users row or the feed head, so no cycle can form.
"""

from __future__ import annotations

from dataclasses import dataclass

from bugless_auth import _queries as sql
from bugless_auth.people import revoke_user_certificates
from bugless_auth.sessions import end_user_sessions, log_ended
from bugless_auth.store import IdentityStore, UserRecord
from bugless_auth.user_writes import UserWrites
from bugless_core.errors import NotFound
from bugless_core.usernames import username_key


@dataclass(frozen=True)
class Ends:
    """What a disable records on what it ends: why (sessions, certificates) and by whom."""

    session_reason: str
    by: str
    certificate_reason: str = "the user was disabled"


@dataclass(frozen=True)
class Disabled:
    """A committed disable (or enable): the user, and how many sessions and certificates ended."""

    record: UserRecord
    sessions: int = 0
    certificates: int = 0


async def _end(writes: UserWrites, record: UserRecord, ends: Ends) -> Disabled:
    await writes.log()  # the feed head, before the sessions (the lock order above)
    sessions = await end_user_sessions(writes.conn, record.user_id, ends.session_reason)
    certificates = await revoke_user_certificates(
        writes.conn, record.user_id, by=ends.by, reason=ends.certificate_reason
    )
    return Disabled(record, sessions, certificates)


def _logged(done: Disabled, ends: Ends) -> Disabled:
    if done.record.disabled:
        log_ended(done.record.user_id, done.sessions, ends.session_reason)
    return done


async def set_disabled(store: IdentityStore, username: str, disabled: bool, ends: Ends) -> Disabled:
    """Disable (ending everything of theirs) or re-enable any user by username.

    Re-enabling ends nothing and brings back nothing: what the disable ended
    stays ended.

    Raises:
        NotFound: nobody has that username.
        Unavailable: the database gave up or went away; nothing was changed.
    """

    async def work(writes: UserWrites) -> Disabled | None:
        row = await writes.fetchrow(sql.SET_DISABLED, username_key(username), disabled)
        if row is None:
            return None
        record = UserRecord.from_row(row)
        return await _end(writes, record, ends) if disabled else Disabled(record)

    done = await store.write_users(work)
    if done is None:
        raise NotFound(f"username: no bugless user is called {username!r}")
    return _logged(done, ends)


async def directory_disable(store: IdentityStore, user_id: str, ends: Ends) -> Disabled | None:
    """Disable a user their directory no longer lists, ending everything of theirs.

    None if they were disabled already (nothing is ended again).
    """

    async def work(writes: UserWrites) -> Disabled | None:
        row = await writes.fetchrow(sql.DIRECTORY_DISABLE, user_id)
        return None if row is None else await _end(writes, UserRecord.from_row(row), ends)

    done = await store.write_users(work)
    return None if done is None else _logged(done, ends)
