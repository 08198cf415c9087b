"""The statements of the ``sessions`` table, kept apart from the control flow that runs them.

:class:`bugless_auth.sessions.SessionStore` runs them; what each statement
guarantees (the locks of :data:`INSERT` against a disable or a revocation, the
generation that keeps one session per certificate) is said beside it, as the
store's own statements are in :mod:`bugless_auth._queries`. Every statement is
shared by the PostgreSQL and CockroachDB dialects.
"""

from __future__ import annotations

from bugless_auth import _queries as sql
from bugless_auth.session_kinds import ALL_SESSIONS, SERVICE, SERVICES

#: Whether ``s`` is a session of user ``{user}`` for certificate ``{certificate}``
#: that a new connection may use: live, with more than ``{seconds}`` seconds left,
#: or lasting until the certificate itself expires (``{until}``: a session ends
#: with its certificate, so one with less left than that is as good as a new
#: one). What :data:`REUSE_FOR_CERTIFICATE` takes and :data:`INSERT` records
#: none beside.
USABLE_FOR_CERTIFICATE = """
s.user_id = {user} AND s.certificate = {certificate} AND s.revoked_at IS NULL
AND s.expires_at > now()
AND s.expires_at >= LEAST(now() + {seconds}::float8 * INTERVAL '1 second', {until}::timestamptz)
"""
#: Record session $1 of user $2, only if that user may have one now: their
#: account (a placeholder merged into one: that account) is not disabled, and
#: they are no placeholder left unmerged. The row is the account's, so whatever
#: ends the account's sessions ends it. ``FOR SHARE`` locks the user's row and
#: the account's until this statement's commit, against every write of
#: ``users`` (a disable is an UPDATE of the account's row, a merge of the
#: placeholder's), so either
#:
#: * the disable's UPDATE waits for this commit, and its end of the user's
#:   sessions, a later statement of its transaction (:mod:`bugless_auth.disabling`),
#:   finds this row; or
#: * this waits for the disable's commit, and then sees the row as it left it
#:   (READ COMMITTED re-checks a locked row's new version; at SERIALIZABLE the
#:   statement fails with 40001 and :meth:`IdentityStore.run` runs it again):
#:   nothing is inserted.
#:
#: It locks only those rows (its own new row aside), and no writer locks both a
#: placeholder's row and its account's, so it cannot deadlock with a disable,
#: which locks the account's row, then the feed's head, then (in a later
#: statement of the same transaction) the account's sessions.
#:
#: A session for certificate $6 (not NULL) is recorded only while the account
#: has no session usable for it (:data:`USABLE_FOR_CERTIFICATE`, $7 seconds
#: left, $8 the certificate's end), with the generation after the highest of its
#: sessions for it; the generation is unique per user and certificate (migration
#: 0014), so of two inserts that read the same sessions one records nothing
#: (``ON CONFLICT DO NOTHING`` once the other committed; at SERIALIZABLE a 40001
#: and a re-run, which then sees the other's row): the caller reuses the
#: winner's.
#:
#: A people CA certificate's row is read ``FOR SHARE`` likewise, against its
#: revocation: a revocation that committed first leaves this insert nothing to
#: do (``certificate_revoked``; the caller checked the certificate live before
#: it began), and one that commits after waits for this insert, then ends the
#: session it recorded with the certificate's others (:mod:`bugless_auth.people`).
#:
#: $9 is the subject of the mapping entry that admitted the certificate (NULL:
#: none, a people certificate's or a password's): migration 0016, read by
#: :mod:`bugless_auth.mapped_sessions` to end exactly the sessions of an entry
#: that is removed.
#:
#: Returns the account's row as found (none: no such user), whether the
#: session was recorded and whether the certificate was found revoked.
_USABLE_BESIDE_INSERT = USABLE_FOR_CERTIFICATE.format(
    user="target.user_id", certificate="$6", seconds="$7", until="$8"
)
INSERT = f"""
WITH target AS (
    SELECT t.user_id, t.disabled, u.placeholder AND u.merged_into = '' AS placeholder
    FROM users u {sql.ACCOUNT_OF_U}
    WHERE u.user_id = $2
    FOR SHARE
), people_certificate AS (
    SELECT revoked_at IS NOT NULL AS revoked FROM people_certificates
    WHERE fingerprint = $6
    FOR SHARE
), recorded AS (
    INSERT INTO sessions (session_id, user_id, authenticator, client_address, expires_at,
                          certificate, certificate_generation, subject)
    SELECT $1, target.user_id, $3, $4, $5, $6, CASE WHEN $6::text IS NOT NULL THEN (
        SELECT COALESCE(max(s.certificate_generation), 0) + 1 FROM sessions s
        WHERE s.user_id = target.user_id AND s.certificate = $6
    ) END, $9
    FROM target WHERE NOT disabled AND NOT placeholder
      AND NOT EXISTS (SELECT 1 FROM people_certificate WHERE revoked)
      AND NOT EXISTS (SELECT 1 FROM sessions s WHERE {_USABLE_BESIDE_INSERT})
    ON CONFLICT DO NOTHING
    RETURNING session_id
)
SELECT user_id, disabled, placeholder, EXISTS (SELECT 1 FROM recorded) AS recorded,
       EXISTS (SELECT 1 FROM people_certificate WHERE revoked) AS certificate_revoked
FROM target
"""
#: Whether session $1 is live, and whether its last use is recorded within $2
#: seconds (a sign-in is a use). Used on every validation: one index read.
IS_LIVE = """
SELECT COALESCE(last_used_at, created_at) > now() - $2::float8 * INTERVAL '1 second' AS recent
FROM sessions WHERE session_id = $1 AND revoked_at IS NULL AND expires_at > now()
"""
#: The live session of user $1 made for certificate $2 that has more than $3
#: seconds left (or lasts until the certificate's end, $4): its id, its expiry,
#: the subject it records (migration 0016), and whether its last use is
#: recorded within $5 seconds (none: make a new one). A read:
#: :meth:`SessionStore.reuse_for_certificate` writes the use only when it is
#: not, or the subject is another (:data:`TOUCH_CERTIFICATE`), as the token
#: path does. A disable that ended the user's sessions before leaves nothing to
#: find; one committed after ends this session too, and its tokens and
#: assertions with it.
REUSE_FOR_CERTIFICATE = f"""
SELECT s.session_id, s.expires_at, s.subject,
       COALESCE(s.last_used_at, s.created_at) > now() - $5::float8 * INTERVAL '1 second' AS recent
FROM sessions s
WHERE {USABLE_FOR_CERTIFICATE.format(user="$1", certificate="$2", seconds="$3", until="$4")}
ORDER BY s.expires_at DESC, s.session_id
LIMIT 1
"""
#: End the live sessions of user $1 made for certificate $2 (it was revoked).
REVOKE_CERTIFICATE = """
UPDATE sessions SET revoked_at = now(), revoked_reason = $3
WHERE user_id = $1 AND certificate = $2 AND revoked_at IS NULL AND expires_at > now()
"""
TOUCH = """
UPDATE sessions SET last_used_at = now() WHERE session_id = $1 AND revoked_at IS NULL
"""
#: A use of certificate session $1 by a connection the mapping's subject $2
#: admitted: its last use, and that subject from now on (the one a removal of
#: the entry ends it by, :mod:`bugless_auth.mapped_sessions`). Written when the
#: recorded use is old or the session records another subject (none: recorded
#: before migration 0016 or by the previous release; another: the certificate
#: now matches a more specific entry, or its old one was removed and another
#: admits it).
TOUCH_CERTIFICATE = """
UPDATE sessions SET last_used_at = now(), subject = COALESCE($2, subject)
WHERE session_id = $1 AND revoked_at IS NULL
"""
COLUMNS = """
session_id, user_id, authenticator, client_address, created_at,
COALESCE(last_used_at, created_at) AS last_used_at, expires_at
"""
#: The live sessions of user $1 of kind ``{kind}`` (:data:`SESSION_KINDS`).
_LIVE_OF_KIND = f"""
user_id = $1 AND revoked_at IS NULL AND expires_at > now()
AND ({{kind}}::text = '{ALL_SESSIONS}'
     OR (authenticator = '{SERVICE}') = ({{kind}}::text = '{SERVICES}'))
"""
#: Those of kind $5, newest first, after the position ($2, $3) (created_at,
#: session_id; NULL: from the start), at most $4. The kind is in the query, not
#: a filter of its pages, so a page holds that many of that kind whatever the
#: other kind's count. A people-CA session's certificate is named by its serial
#: (``certificate_serial``; NULL for other sessions, and once the certificate's
#: row is purged), which ``bugless auth user certificates`` lists and revokes.
LIST_LIVE = f"""
SELECT {COLUMNS},
       (SELECT c.serial FROM people_certificates c
        WHERE c.fingerprint = sessions.certificate) AS certificate_serial
FROM sessions
WHERE {_LIVE_OF_KIND.format(kind="$5")}
  AND ($2::timestamptz IS NULL OR (created_at, session_id) < ($2::timestamptz, $3::text))
ORDER BY created_at DESC, session_id DESC
LIMIT $4
"""
#: How many live sessions of kind $2 user $1 has: :data:`LIST_LIVE`'s rows on every page.
COUNT_LIVE = f"SELECT count(*) FROM sessions WHERE {_LIVE_OF_KIND.format(kind='$2')}"
#: End live session $1 if it is user $2's (any user's when $2 is empty).
END_ONE = f"""
UPDATE sessions SET revoked_at = now(), revoked_reason = $3
WHERE session_id = $1 AND revoked_at IS NULL AND expires_at > now()
  AND ($2 = '' OR user_id = $2)
RETURNING {COLUMNS}
"""
#: End user $1's live sessions of kind $2 (:data:`SESSION_KINDS`), giving reason $3:
#: :data:`LIST_LIVE`'s rows on every page, so the command ends what it would list.
END_LIVE_OF_KIND = f"""
UPDATE sessions SET revoked_at = now(), revoked_reason = $3
WHERE {_LIVE_OF_KIND.format(kind="$2")}
"""
REVOKE_ONE = """
UPDATE sessions SET revoked_at = now(), revoked_reason = $2
WHERE session_id = $1 AND revoked_at IS NULL
"""
REVOKE_USER = """
UPDATE sessions SET revoked_at = now(), revoked_reason = $2
WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()
"""
REVOKED_SINCE = """
SELECT session_id FROM sessions
WHERE revoked_at > now() - $1::float8 * INTERVAL '1 second' AND expires_at > now()
"""
PURGE = "DELETE FROM sessions WHERE expires_at < now() - $1::float8 * INTERVAL '1 second'"
