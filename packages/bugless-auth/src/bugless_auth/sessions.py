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

A row is only written for a user who may have a session at that moment: the
insert reads the user's row (locked against a concurrent disable) and
writes nothing for a disabled user or a placeholder (see
:meth:`SessionStore.record`). Deciding from anything read before it, a
replica's cached record or a sign-in's own read, left a window: a disable
committed in between ended the user's sessions *before* this one existed,
so nothing ended it.

Rows are kept (revoked or not) until a day after they expire, then purged.

A client certificate's connections share one session: the API asks the
Authenticator about every new connection, and a session each made every
`bugless` command a row of its own. A session made for a certificate records
its SHA-256 (``certificate``), and the next authentication of that certificate
for the same user reuses it while enough of it is left
(:meth:`SessionStore.reuse_for_certificate`). Ending it cuts the connections
that use it (the Model refuses their assertions); the certificate's next
connection, or an open one's next identity check, makes a new session: only
revoking the certificate keeps it out, and that ends its sessions too (a
session being recorded as the revocation commits included: its insert reads
the certificate's row ``FOR SHARE``, as it reads the user's). The
rule holds for simultaneous first connections too: each certificate session
has a generation unique per user and certificate (migration 0014), so the
database, not a read before the write, lets one of them record the session
and the others reuse it. A certificate session expires no later than its
certificate (its tokens too), so the sessions page stops listing it when the
certificate expires; one with less left than a renewal needs is reused all
the same, since a new one could not last longer. A session made through a
mapping (the ``tls`` backend) records the entry that admitted it (its
``subject``, migration 0016) and ends when the mapping stops holding that entry
or the entry maps another user, and any certificate session ends when its
certificate is refused as unmapped (:mod:`bugless_auth.mapped_sessions`).

A person sees their own live sessions (:meth:`SessionStore.list_live`, the
sessions page) and ends one by id (:meth:`SessionStore.end`). Each row says
when it was last used: the liveness check writes ``last_used_at`` when the
one recorded is older than :data:`LAST_USED_GRANULARITY_SECONDS`, so an
active session costs one small UPDATE every few minutes, and a validation
otherwise stays the one read it was. A certificate session never passes the
liveness check (the API holds no token, only the answer to
``AuthenticateCertificate``); its use is recorded by the reuse every new
connection and every identity re-check of an open one makes (the API's
``--identity-ttl-seconds``, 5 minutes, less the assertion's margin), written
at most every :data:`CERTIFICATE_LAST_USED_GRANULARITY_SECONDS`: so a
certificate in use shows a last use within about that re-check interval plus a
minute, and a connection that finds it recent writes nothing.
"""

from __future__ import annotations

import datetime
import logging
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bugless_auth import _session_queries as sql
from bugless_auth.session_kinds import ALL_SESSIONS, SESSION_KINDS
from bugless_core.errors import Unavailable

if TYPE_CHECKING:  # the driver and the store only in annotations: the CLI's help reads this module
    import asyncpg

    from bugless_auth.store import IdentityStore

_log = logging.getLogger("bugless.auth")

#: How long an expired session's row is kept (for audits) before purging.
KEEP_EXPIRED_SECONDS = 24 * 3600.0
#: How often one replica purges expired rows (at most).
PURGE_EVERY_SECONDS = 600.0
#: A certificate's connections share its live session while more than this
#: part of a token's lifetime is left (3 h of the default 12 h); then the next
#: connection makes a new one, so a long-lived connection never holds a token
#: about to expire, and a certificate has at most two live sessions at a time.
CERTIFICATE_SESSION_RENEW_FRACTION = 0.25
#: Rounds of reuse-or-record for a certificate's session: one loses a race
#: with a concurrent first connection at most once, unless that session ends
#: at once.
_CERTIFICATE_SESSION_ATTEMPTS = 3
#: How far behind a session's recorded last use may be (ListSessions says it,
#: and the sessions page from it): the write a validation makes at most this often.
LAST_USED_GRANULARITY_SECONDS = 300.0
#: The same for a certificate session, whose use is seen only at a connection
#: or an identity re-check (the API asks every ~4.5 minutes while calls come):
#: written at most once a minute, so the page's last use stays within ~5.5.
CERTIFICATE_LAST_USED_GRANULARITY_SECONDS = 60.0


@dataclass(frozen=True)
class SeenCertificate:
    """The client certificate a session is made for.

    Attributes:
        fingerprint: SHA-256 of its DER, hex (the ``certificate`` column).
        not_after: When it expires (POSIX time): its session ends then too.
        subject: The mapping entry's subject that admitted it (``tls:…``;
            the ``subject`` column), or None when no mapping did (a people
            certificate): its session ends when that entry is removed or
            maps another user (:mod:`bugless_auth.mapped_sessions`).
    """

    fingerprint: str
    not_after: float
    subject: str | None = None


@dataclass(frozen=True)
class NotRecorded:
    """Why :meth:`SessionStore.record` wrote no session: the user's row as it found it.

    Attributes:
        reason: ``USER_UNKNOWN`` (no such user), ``USER_DISABLED`` (they, or
            the account a placeholder was merged into, are disabled) or
            ``USER_PLACEHOLDER`` (an imported person's placeholder merged
            into no account: nobody to act for).
        detail: What is wrong, to end a sentence naming the user ("is
            disabled").
    """

    reason: str
    detail: str


#: What :meth:`SessionStore.record` answers when it recorded no session for a
#: certificate because one usable for it was recorded first (by a concurrent
#: first connection): the caller reuses that one.
CERTIFICATE_HAS_SESSION = NotRecorded("CERTIFICATE_HAS_SESSION", "has a session for it already")
#: What it answers when the people certificate was revoked while the session
#: was being made (after the caller found it live).
CERTIFICATE_REVOKED = NotRecorded("CERTIFICATE_REVOKED", "has had this certificate revoked")


def _refusal(row: asyncpg.Record | None) -> NotRecorded | None:
    """What a row of :data:`sql.INSERT` says: None when the session was recorded."""
    if row is None:
        return NotRecorded("USER_UNKNOWN", "does not exist")
    if row["recorded"]:
        return None
    if row["disabled"]:
        return NotRecorded("USER_DISABLED", "is disabled")
    if row["placeholder"]:
        return NotRecorded("USER_PLACEHOLDER", "is a placeholder (an imported person)")
    if row["certificate_revoked"]:
        return CERTIFICATE_REVOKED
    return CERTIFICATE_HAS_SESSION


def _when(posix: float) -> datetime.datetime:
    """A POSIX time as the ``timestamptz`` asyncpg sends."""
    return datetime.datetime.fromtimestamp(posix, datetime.UTC)


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
        certificate: str | None = None,
        min_seconds_left: float = 0.0,
        certificate_until: float | None = None,
        subject: str | None = None,
    ) -> NotRecorded | None:
        """Write the row of a token about to be handed out, if its user may have one now.

        The caller hands the token out only when this returns None: the
        user existed, was enabled and no unmerged placeholder when the row
        was written, and any disable committed after that ends this session
        too (see :data:`sql.INSERT`; a merged placeholder's session is its
        account's). Otherwise nothing was written, and the answer says why.
        ``certificate`` (SHA-256 of a client certificate's DER, hex) marks a
        session made for that certificate, for :meth:`reuse_for_certificate`;
        none is recorded while the user has one for it with more than
        ``min_seconds_left`` to live, even one recorded a moment ago by a
        concurrent call (the answer is then :data:`CERTIFICATE_HAS_SESSION`),
        nor one that lasts until the certificate's own expiry
        (``certificate_until``, a POSIX time: the caller's ``expires_at`` is
        no later). ``subject`` is the mapping entry's that admitted the
        certificate (:attr:`SeenCertificate.subject`).
        """
        expires = datetime.datetime.fromtimestamp(expires_at, datetime.UTC)
        until = _when(certificate_until) if certificate_until is not None else expires
        address = client_address[:256]
        row = await self._store.run(
            lambda conn: conn.fetchrow(
                sql.INSERT,
                session_id,
                user_id,
                authenticator,
                address,
                expires,
                certificate,
                min_seconds_left,
                until,
                subject,
            ),
            transaction=False,
        )
        await self._purge_now_and_then()
        return _refusal(row)

    async def for_certificate(
        self,
        certificate: SeenCertificate,
        *,
        user_id: str,
        authenticator: str,
        client_address: str,
        lifetime: float,
    ) -> tuple[str, float, bool] | NotRecorded:
        """The session a connection with ``certificate`` uses: id, expiry and whether it is new.

        The live session ``user_id`` has for it when one has more than
        :data:`CERTIFICATE_SESSION_RENEW_FRACTION` of ``lifetime`` left (or
        lasts until the certificate's end), else a new one of ``lifetime``
        seconds, no longer than the certificate's; of concurrent first
        connections one records it and the others reuse it. A token naming
        it expires no later than the expiry returned. Otherwise why none
        could be recorded (:meth:`record`'s answers, never
        :data:`CERTIFICATE_HAS_SESSION`).

        Raises:
            Unavailable: the certificate's session kept ending as it was found.
        """
        min_seconds_left = lifetime * CERTIFICATE_SESSION_RENEW_FRACTION
        for _ in range(_CERTIFICATE_SESSION_ATTEMPTS):
            live = await self.reuse_for_certificate(
                user_id,
                certificate.fingerprint,
                min_seconds_left=min_seconds_left,
                until=certificate.not_after,
                subject=certificate.subject,
            )
            if live is not None:
                return (*live, False)
            session_id = secrets.token_urlsafe(18)
            expires_at = float(int(min(time.time() + lifetime, certificate.not_after)))
            refused = await self.record(
                session_id,
                user_id=user_id,
                authenticator=authenticator,
                client_address=client_address,
                expires_at=expires_at,
                certificate=certificate.fingerprint,
                min_seconds_left=min_seconds_left,
                certificate_until=certificate.not_after,
                subject=certificate.subject,
            )
            if refused is None:
                return session_id, expires_at, True
            if refused is not CERTIFICATE_HAS_SESSION:
                return refused
            # A concurrent first connection recorded its session first: reuse it.
        raise Unavailable(
            "the session of this certificate kept changing while signing in; try again"
        )

    async def reuse_for_certificate(
        self,
        user_id: str,
        certificate: str,
        *,
        min_seconds_left: float,
        until: float,
        subject: str | None = None,
    ) -> tuple[str, float] | None:
        """The live session ``user_id`` has for ``certificate``: id and expiry.

        Only one with more than ``min_seconds_left`` to live, or one lasting
        until the certificate expires (``until``, a POSIX time); None when
        there is none (the caller records a new one). Its use is recorded as
        a validation's is: a second statement when the recorded last use is
        older than :data:`CERTIFICATE_LAST_USED_GRANULARITY_SECONDS`, else
        nothing written (every API connection and identity re-check comes here).
        The session records ``subject``, the mapping entry's that admitted the
        certificate this time, from then on: a row that records none (made
        before migration 0016, or by the previous release) or another entry's
        is written then too, so the entry that now admits the certificate is
        the one whose removal ends it.
        """
        row = await self._store.run(
            lambda conn: conn.fetchrow(
                sql.REUSE_FOR_CERTIFICATE,
                user_id,
                certificate,
                min_seconds_left,
                _when(until),
                CERTIFICATE_LAST_USED_GRANULARITY_SECONDS,
            ),
            transaction=False,
        )
        if row is None:
            return None
        session_id = str(row["session_id"])
        if not row["recent"] or (subject is not None and row["subject"] != subject):
            await self._store.run(
                lambda conn: conn.execute(sql.TOUCH_CERTIFICATE, session_id, subject),
                transaction=False,
            )
        return session_id, float(row["expires_at"].timestamp())

    async def is_live(self, session_id: str) -> bool:
        """Whether the session exists, has not been ended and has not expired.

        A live session whose recorded last use is older than
        :data:`LAST_USED_GRANULARITY_SECONDS` is marked used now (a second
        statement, that often at most): what the sessions page shows.
        """
        if not session_id:
            return False
        recent = await self._store.run(
            lambda conn: conn.fetchval(sql.IS_LIVE, session_id, LAST_USED_GRANULARITY_SECONDS),
            transaction=False,
        )
        if recent is None:
            return False
        if not recent:
            await self._store.run(
                lambda conn: conn.execute(sql.TOUCH, session_id), transaction=False
            )
        return True

    async def list_live(
        self,
        user_id: str,
        *,
        after: tuple[datetime.datetime, str] | None,
        limit: int,
        kind: str = ALL_SESSIONS,
    ) -> list[asyncpg.Record]:
        """``user_id``'s live sessions, newest first, after a position, at most ``limit``.

        Only those of ``kind`` (one of :data:`SESSION_KINDS`). Each row has
        the columns of :data:`sql.COLUMNS` and ``certificate_serial`` (the
        people-CA certificate's serial, else None); a row's position for the
        next page is ``(created_at, session_id)``.
        """
        if kind not in SESSION_KINDS:
            raise ValueError(f"kind: {kind!r} is not one of {', '.join(SESSION_KINDS)}")
        since, session_id = after if after is not None else (None, "")
        rows: list[asyncpg.Record] = await self._store.run(
            lambda conn: conn.fetch(sql.LIST_LIVE, user_id, since, session_id, limit, kind),
            transaction=False,
        )
        return rows

    async def count_live(self, user_id: str, *, kind: str = ALL_SESSIONS) -> int:
        """How many live sessions of ``kind`` ``user_id`` has (what :meth:`list_live` pages)."""
        if kind not in SESSION_KINDS:
            raise ValueError(f"kind: {kind!r} is not one of {', '.join(SESSION_KINDS)}")
        count: int = await self._store.run(
            lambda conn: conn.fetchval(sql.COUNT_LIVE, user_id, kind), transaction=False
        )
        return count

    async def end(self, session_id: str, *, owner: str, reason: str) -> asyncpg.Record | None:
        """End one live session, only if ``owner``'s (anyone's when ``owner`` is empty).

        Returns the session's row as it was (:data:`sql.COLUMNS`), or None when
        no live session of that owner has the id: never ended, ended or
        expired already, or someone else's, which the caller cannot tell
        apart.
        """
        row: asyncpg.Record | None = await self._store.run(
            lambda conn: conn.fetchrow(sql.END_ONE, session_id, owner, reason), transaction=False
        )
        if row is not None:
            log_ended(str(row["user_id"]), 1, reason)
        return row

    async def end_all(self, user_id: str, *, kind: str, reason: str) -> int:
        """End every live session of ``kind`` that ``user_id`` has; how many there were.

        What an operator does when an account may be compromised, in one
        statement rather than a listing and an end per session (which would
        miss a session started in between). The sessions ended are those
        :meth:`list_live` lists for ``kind`` (one of :data:`SESSION_KINDS`).
        Logged like :meth:`end`'s single ends, with ``reason``.
        """
        if kind not in SESSION_KINDS:
            raise ValueError(f"kind: {kind!r} is not one of {', '.join(SESSION_KINDS)}")
        status = await self._store.run(
            lambda conn: conn.execute(sql.END_LIVE_OF_KIND, user_id, kind, reason),
            transaction=False,
        )
        ended = _count(status)
        log_ended(user_id, ended, reason)
        return ended

    async def revoked_within(self, seconds: float) -> list[str]:
        """Sessions ended in the last ``seconds`` (and not expired): what the Model refuses.

        An identity assertion lives at most ``seconds``, so a session ended
        earlier has no assertion left that could still be accepted.
        """
        rows = await self._store.run(
            lambda conn: conn.fetch(sql.REVOKED_SINCE, seconds), transaction=False
        )
        return [str(row["session_id"]) for row in rows]

    async def revoke(self, session_id: str, reason: str) -> int:
        """End one session; 1 if it was live, else 0."""
        status = await self._store.run(
            lambda conn: conn.execute(sql.REVOKE_ONE, session_id, reason), transaction=False
        )
        return _count(status)

    async def revoke_user(self, user_id: str, reason: str) -> int:
        """End every live session of ``user_id``; how many there were."""
        revoked = await self._store.run(
            lambda conn: end_user_sessions(conn, user_id, reason), transaction=False
        )
        log_ended(user_id, revoked, reason)
        return revoked

    async def _purge_now_and_then(self) -> None:
        now = time.monotonic()
        if now < self._next_purge:
            return
        self._next_purge = now + PURGE_EVERY_SECONDS
        await self._store.run(
            lambda conn: conn.execute(sql.PURGE, KEEP_EXPIRED_SECONDS), transaction=False
        )


async def end_certificate_sessions(conn: Any, user_id: str, certificate: str, reason: str) -> int:
    """End ``user_id``'s live sessions made for ``certificate`` (SHA-256 hex) on ``conn``; how many.

    Revoking a people certificate runs this in the revocation's transaction,
    so the connections already open with it lose their access too (the Model
    refuses their assertions within ``--assertion-refresh-seconds``), not
    only new connections.
    """
    return _count(await conn.execute(sql.REVOKE_CERTIFICATE, user_id, certificate, reason))


async def end_user_sessions(conn: Any, user_id: str, reason: str) -> int:
    """End every live session of ``user_id`` on ``conn`` (in its transaction, if any); how many.

    A disable runs this in its own transaction (:mod:`bugless_auth.disabling`),
    so that the user is never left disabled with sessions the database still
    calls live, nor enabled again with them.
    """
    return _count(await conn.execute(sql.REVOKE_USER, user_id, reason))


def log_ended(user_id: str, revoked: int, reason: str) -> None:
    """Log sessions ended (once their transaction committed)."""
    _log.info(
        "ended %d session(s) of %s: %s",
        revoked,
        user_id,
        reason,
        extra={"user_id": user_id, "revoked": revoked, "reason": reason},
    )
