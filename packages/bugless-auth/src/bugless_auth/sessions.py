"""Server-side sessions: the revocation list every replica reads.

A session token is a signed JWT, so any replica can check its signature and
expiry alone; what a signature cannot say is that the session has since
ended. Each token therefore names a row here (its ``jti`` is the session
id), written when the token is issued, and :meth:`SessionStore.is_live` is
asked on every validation. Ending a session is an UPDATE of that row, so
sign-out on one web replica, "sign out everywhere", an administrator
disabling a user, or a revocation is seen by every Authenticator replica on
the next validation; the frontends' own token caches
(``--token-cache-seconds``) bound how late they notice.

Rows are kept (revoked or not) until a day after they expire, then purged.
"""

from __future__ import annotations

import datetime
import logging
import time

from bugless_auth.store import IdentityStore

_log = logging.getLogger("bugless.auth")

#: How long an expired session's row is kept (for audits) before purging.
KEEP_EXPIRED_SECONDS = 24 * 3600.0
#: How often one replica purges expired rows (at most).
PURGE_EVERY_SECONDS = 600.0

_INSERT = """
INSERT INTO sessions (session_id, user_id, authenticator, client_address, expires_at)
VALUES ($1, $2, $3, $4, $5)
"""
_IS_LIVE = """
SELECT 1 FROM sessions WHERE session_id = $1 AND revoked_at IS NULL AND expires_at > now()
"""
_REVOKE_ONE = """
UPDATE sessions SET revoked_at = now(), revoked_reason = $2
WHERE session_id = $1 AND revoked_at IS NULL
"""
_REVOKE_USER = """
UPDATE sessions SET revoked_at = now(), revoked_reason = $2
WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()
"""
_REVOKED_SINCE = """
SELECT session_id FROM sessions
WHERE revoked_at > now() - $1::float8 * INTERVAL '1 second' AND expires_at > now()
"""
_PURGE = "DELETE FROM sessions WHERE expires_at < now() - $1::float8 * INTERVAL '1 second'"


def _count(status: str) -> int:
    """Rows touched, from asyncpg's command status (``UPDATE 3``)."""
    return int(status.rsplit(" ", 1)[-1])


class SessionStore:
    """The ``sessions`` table of the Authenticator's schema."""

    def __init__(self, store: IdentityStore) -> None:
        """Use ``store``'s pool (the same database and schema)."""
        self._store = store
        self._next_purge = 0.0

    async def record(
        self,
        session_id: str,
        *,
        user_id: str,
        authenticator: str,
        client_address: str,
        expires_at: float,
    ) -> None:
        """Write the row of a token about to be handed out."""
        expires = datetime.datetime.fromtimestamp(expires_at, datetime.UTC)
        address = client_address[:256]
        await self._store.run(
            lambda conn: conn.execute(
                _INSERT, session_id, user_id, authenticator, address, expires
            ),
            transaction=False,
        )
        await self._purge_now_and_then()

    async def is_live(self, session_id: str) -> bool:
        """Whether the session exists, has not been ended and has not expired."""
        if not session_id:
            return False
        found = await self._store.run(
            lambda conn: conn.fetchval(_IS_LIVE, session_id), transaction=False
        )
        return found is not None

    async def revoked_within(self, seconds: float) -> list[str]:
        """Sessions ended in the last ``seconds`` (and not expired): what the Model refuses.

        An identity assertion lives at most ``seconds``, so a session ended
        earlier has no assertion left that could still be accepted.
        """
        rows = await self._store.run(
            lambda conn: conn.fetch(_REVOKED_SINCE, seconds), transaction=False
        )
        return [str(row["session_id"]) for row in rows]

    async def revoke(self, session_id: str, reason: str) -> int:
        """End one session; 1 if it was live, else 0."""
        status = await self._store.run(
            lambda conn: conn.execute(_REVOKE_ONE, session_id, reason), transaction=False
        )
        return _count(status)

    async def revoke_user(self, user_id: str, reason: str) -> int:
        """End every live session of ``user_id``; how many there were."""
        revoked = _count(
            await self._store.run(
                lambda conn: conn.execute(_REVOKE_USER, user_id, reason), transaction=False
            )
        )
        _log.info(
            "ended %d session(s) of %s: %s",
            revoked,
            user_id,
            reason,
            extra={"user_id": user_id, "revoked": revoked, "reason": reason},
        )
        return revoked

    async def _purge_now_and_then(self) -> None:
        now = time.monotonic()
        if now < self._next_purge:
            return
        self._next_purge = now + PURGE_EVERY_SECONDS
        await self._store.run(
            lambda conn: conn.execute(_PURGE, KEEP_EXPIRED_SECONDS), transaction=False
        )
