"""A certificate session lasts only while a mapping still names its user.

A session made for a certificate that the ``tls`` backend maps (its mapping
file's CN, SAN email or fingerprint entries) used to outlive the entry: once
the entry was removed, new connections of the certificate were refused, but
its session stayed live until it expired (12 hours by default), listed on
the person's sessions page and in ``bugless auth user sessions``, and its
token (handed to the API with the identity, which drops it) still validated.

So whenever a certificate backend's mapping changed
(:meth:`~bugless_core.auth_backend.CertificateAuthenticator.mapped_subjects`
answers another list: its file re-read; or the replica's first look, so
what changed while it was not serving is caught too), the Authenticator
ends the live certificate sessions of that backend whose user no mapped
subject names any more. It looks when it authenticates a certificate
(before asking the backend, so the certificate of a removed entry finds its
session ended) and before it lists sessions; a backend re-reads its file at
most every few seconds, so each look is one ``stat`` at most. A round the
database failed is run again at the next look.

A session records its certificate's fingerprint, not the entry that mapped
it, so the rule is per user: a user still named by another entry (two
certificates, one entry removed) keeps their sessions, and the removed
entry's certificate is refused at its next connection or identity re-check
(the API's ``--identity-ttl-seconds``) all the same; its session then stays
listed until it expires. Ending a session takes the Model's acceptance of
its assertions within ``--assertion-refresh-seconds``, as any ended session.

The statement scans the live sessions of the backend (no index on
``authenticator``): it runs only when a mapping changed, a few times a day
at most, and ends what it finds in one UPDATE.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from bugless_auth.sessions import log_ended
from bugless_auth.store import IdentityStore
from bugless_core.auth_backend import AuthenticatorBackend, CertificateAuthenticator

#: End the live certificate sessions of backend $1 whose user (a placeholder
#: merged into an account: that account, whose the session is) no subject of
#: $2 maps, with reason $3; the ended sessions' users.
_END_UNMAPPED = """
UPDATE sessions s SET revoked_at = now(), revoked_reason = $3
WHERE s.authenticator = $1 AND s.certificate IS NOT NULL
  AND s.revoked_at IS NULL AND s.expires_at > now()
  AND NOT EXISTS (
      SELECT 1 FROM external_subjects x JOIN users u ON u.user_id = x.user_id
      WHERE x.authenticator = $1 AND x.subject = ANY($2::text[])
        AND s.user_id = (CASE WHEN u.merged_into <> '' THEN u.merged_into ELSE u.user_id END)
  )
RETURNING s.user_id
"""


def unmapped_reason(backend: str) -> str:
    """Why such a session ended (its ``revoked_reason``, in the log line)."""
    return f"the {backend} mapping no longer names this user's certificate"


class MappedSessions:
    """Ends the certificate sessions of users a backend's changed mapping no longer names."""

    def __init__(self, store: IdentityStore, backends: Sequence[AuthenticatorBackend]) -> None:
        """Watch ``backends``' mappings (the certificate backends among them)."""
        self._store = store
        self._backends = [b for b in backends if isinstance(b, CertificateAuthenticator)]
        #: The list each backend's sessions were last brought in line with.
        self._done: dict[str, frozenset[str]] = {}

    async def end_unmapped(self) -> int:
        """Bring the sessions in line with every mapping that changed since; how many ended.

        Nothing is read or written for a backend whose list is the one last
        done.

        Raises:
            Unavailable: the database cannot be reached (the round is run
                again at the next call).
        """
        ended = 0
        for backend in self._backends:
            subjects = await backend.mapped_subjects()
            if subjects is None or self._done.get(backend.name) is subjects:
                continue
            reason = unmapped_reason(backend.name)
            rows = await self._end(backend.name, sorted(subjects), reason)
            self._done[backend.name] = subjects
            users: dict[str, int] = {}
            for row in rows:
                users[row["user_id"]] = users.get(row["user_id"], 0) + 1
            for user_id, count in users.items():
                log_ended(user_id, count, reason)
            ended += len(rows)
        return ended

    async def _end(self, backend: str, mapped: list[str], reason: str) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self._store.run(
            lambda conn: conn.fetch(_END_UNMAPPED, backend, mapped, reason), transaction=False
        )
        return rows
