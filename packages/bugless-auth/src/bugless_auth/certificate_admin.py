"""An operator's view of one person's people-CA certificates: list them, revoke them.

What ``bugless auth user certificates`` runs on the Authenticator's database
(:mod:`bugless_auth.user_certificate_commands`). A person sees and revokes
their own certificates on the web's API access page; an operator needs the
same for *another* person when their account may be compromised: ending the
sessions (``bugless auth user sessions --end-all``) leaves a certificate from
``bugless login`` valid, and it opens a new session at its next connection to
the API. Revoking it here is what keeps it out, without disabling the account.

A revocation is the one :meth:`bugless_auth.people.PeopleCertificates.revoke`
makes, in one transaction for all the serials asked: the row is marked
revoked (with who and why) and the certificate's live sessions end, so the
API's open connections with it lose their access at their next Model call
(the Model learns of ended sessions every ``--assertion-refresh-seconds``)
and every new connection is refused by the Authenticator, which reads the
row on each ``AuthenticateCertificate``. A serial that is not the person's,
already revoked or expired is refused, naming why, and nothing is revoked.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bugless_auth.people_ca import normalise_serial
from bugless_auth.sessions import end_certificate_sessions, log_ended
from bugless_core.errors import NotFound

if TYPE_CHECKING:
    from bugless_auth.store import IdentityStore

_log = logging.getLogger("bugless.auth.people")

#: Most certificates listed (rows are purged 30 days after they expire).
MAX_LISTED = 500

#: A person's certificates, newest first, with the latest use their sessions
#: record (a certificate session's ``last_used_at``, else its creation; none
#: once its sessions are purged, a day after they expire).
_LIST = f"""
SELECT c.serial, c.fingerprint, c.label, c.source, c.issued_at, c.not_after,
       c.revoked_at, c.revoked_by, c.revoked_reason, c.not_after <= now() AS expired,
       (SELECT max(COALESCE(s.last_used_at, s.created_at)) FROM sessions s
        WHERE s.user_id = c.user_id AND s.certificate = c.fingerprint) AS last_used_at
FROM people_certificates c
WHERE c.user_id = $1
ORDER BY c.issued_at DESC, c.serial
LIMIT {MAX_LISTED}
"""
#: The rows of serials $2 of user $1, locked for the revocation that follows.
_CHOSEN = """
SELECT serial, revoked_at, revoked_by, revoked_reason, not_after, not_after <= now() AS expired
FROM people_certificates WHERE user_id = $1 AND serial = ANY($2::text[]) FOR UPDATE
"""
#: Revoke user $1's live certificates: those of serials $2, or all when $2 is NULL.
_REVOKE = """
UPDATE people_certificates SET revoked_at = now(), revoked_by = $3, revoked_reason = $4
WHERE user_id = $1 AND revoked_at IS NULL AND not_after > now()
  AND ($2::text[] IS NULL OR serial = ANY($2::text[]))
RETURNING serial, fingerprint
"""


@dataclass(frozen=True)
class RevokedCertificate:
    """One certificate revoked, and how many of its live sessions ended with it.

    Attributes:
        serial: Its serial, lower-case hex.
        sessions_ended: Its sessions that were live.
    """

    serial: str
    sessions_ended: int


def certificate_state(row: Any) -> str:
    """``revoked``, ``expired`` or ``live``: what a listed row's certificate is now."""
    if row["revoked_at"] is not None:
        return "revoked"
    return "expired" if row["expired"] else "live"


async def list_certificates(store: IdentityStore, user_id: str) -> list[Any]:
    """``user_id``'s people-CA certificates, newest first, at most :data:`MAX_LISTED`."""
    rows: list[Any] = await store.run(lambda conn: conn.fetch(_LIST, user_id), transaction=False)
    return rows


def _not_live(username: str, serial: str, row: Any | None) -> NotFound:
    """The refusal of a serial that names no live certificate of the person, saying why."""
    if row is None:
        return NotFound(
            f"serial: {username} has no certificate {serial!r} from the people CA "
            "(see the list without --revoke)"
        )
    if row["revoked_at"] is not None:
        why = f": {row['revoked_reason']}" if row["revoked_reason"] else ""
        return NotFound(
            f"serial: {username}'s certificate {serial} was revoked already, at "
            f"{_when(row['revoked_at'])} by {row['revoked_by'] or 'an unrecorded revoker'}{why}"
        )
    return NotFound(
        f"serial: {username}'s certificate {serial} expired at {_when(row['not_after'])}; "
        "it opens nothing, so there is nothing to revoke"
    )


def _when(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).isoformat(timespec="seconds")


async def revoke_certificates(
    store: IdentityStore,
    *,
    user_id: str,
    username: str,
    serials: Sequence[str] | None,
    by: str,
    reason: str,
) -> list[RevokedCertificate]:
    """Revoke ``serials`` of the person (every live one when None), ending their sessions.

    One transaction: either every serial asked is revoked, or (one not the
    person's, revoked already or expired) none is. Each revocation is logged
    as :meth:`~bugless_auth.people.PeopleCertificates.revoke` logs one, and
    the sessions ended as every session end is (:func:`log_ended`), once
    committed.

    Raises:
        NotFound: a serial that names no live certificate of the person,
            saying whether it is unknown, revoked (when, by whom, why) or
            expired.
    """
    chosen = None if serials is None else list(dict.fromkeys(map(normalise_serial, serials)))

    async def work(conn: Any) -> list[RevokedCertificate]:
        if chosen is not None:
            rows = {r["serial"]: r for r in await conn.fetch(_CHOSEN, user_id, chosen)}
            for serial in chosen:
                row = rows.get(serial)
                if row is None or row["revoked_at"] is not None or row["expired"]:
                    raise _not_live(username, serial, row)
        revoked = await conn.fetch(_REVOKE, user_id, chosen, by, reason)
        return [
            RevokedCertificate(
                serial=row["serial"],
                sessions_ended=await end_certificate_sessions(
                    conn, user_id, row["fingerprint"], f"certificate {row['serial']} revoked"
                ),
            )
            for row in revoked
        ]

    done = await store.run(work)
    for certificate in done:
        _log.info(
            "people certificate %s of %s revoked by %s (%s)",
            certificate.serial,
            username,
            by,
            reason,
            extra={
                "audit": "person_certificate_revoked",
                "serial": certificate.serial,
                "user_id": user_id,
                "by": by,
            },
        )
        log_ended(user_id, certificate.sessions_ended, f"certificate {certificate.serial} revoked")
    return done
