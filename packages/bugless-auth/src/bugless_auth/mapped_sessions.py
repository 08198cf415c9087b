"""A certificate session lasts only while the mapping entry that admitted it does.

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
ends the live certificate sessions of that backend whose entry is gone. It
looks when it authenticates a certificate (before asking the backend, so the
certificate of a removed entry finds its session ended), before it lists
sessions, and every :data:`SWEEP_SECONDS` by itself, so a bot that never
connects again is not listed for hours either (``bugless auth user
sessions`` reads the table, not a replica); a backend re-reads its file at
most every few seconds, so each look is one ``stat`` at most. A round the
database failed is run again at the next look; the sweep is supervised as
``auth.mapped_sessions`` (an outage logged once, a bug logged and counted,
and the sweeps go on).

Each session records the subject of the entry that admitted its certificate
(``sessions.subject``, migration 0016: ``tls:sha256:…``, ``tls:<cn>``), and
lives while the mapping holds that subject *and* the store has it as the
session's user's. Two entries naming one username are two subjects of one
user (the store joins them): removing one, the ``sha256:`` entry of a leaked
certificate say, ends exactly the sessions that entry admitted at the
mapping change, while the other entry's go on. An entry whose username is
changed (not removed) ends the sessions it admitted at the mapping change
too: the backend says which username each subject maps to now, and a
session lives only while that is its user's username. Its certificate's next
sign-in is answered as an entry's first: it joins the user holding the new
username, or, with nobody holding it, renames the user the entry was
(its id, and so its history, kept), with a new session either way. Before,
such a session stayed the old user's until the certificate next signed in,
when the subject moved and :meth:`MappedSessions.recheck` ended it; that
recheck stays for a move the mapping change did not already catch. A
certificate that matches two entries
signs in by the most specific (fingerprint, then SAN email, then CN); its
session records the entry of its latest sign-in, so removing that entry ends
the session although the other still admits the certificate, whose next
connection or identity re-check then makes a new one.

A row recorded before migration 0016 (or by the previous release during the
rollout) has no subject. It is kept by the rule of before, while any subject
of the mapping names its user, and records its subject at its next use
(:meth:`bugless_auth.sessions.SessionStore.reuse_for_certificate`): ending
such rows at the upgrade would cut every bot's connections at once, and
ending none would leave them to the weaker rule for their whole life.

A certificate can still be refused while its entry stays mapped: the
backend's ``ca_file`` replaced by a new bot CA while the entry (a CN) names
the new certificate too, or a people certificate whose CA the Authenticator
no longer lists. Its next connection or identity re-check (the API's
``--identity-ttl-seconds``) is refused, and that refusal ends the sessions of
that one certificate (:meth:`MappedSessions.end_refused`), by its
fingerprint, whoever they were made for. Ending a session takes the Model's
acceptance of its assertions within ``--assertion-refresh-seconds``, as any
ended session.

The per-entry statement scans the live sessions of the backend (no index on
``authenticator``): it runs only when a mapping changed, a few times a day
at most, and ends what it finds in one UPDATE. The per-certificate one runs
at every refusal, which any certificate the API's client CA bundle lets
through can cause as often as it connects: it reads the index of live
certificate sessions (migration 0015) and ends at most
:data:`REFUSED_SESSIONS_LIMIT` rows, so an unknown certificate costs one
index probe that finds nothing and writes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence

import asyncpg
from prometheus_client import REGISTRY, CollectorRegistry

from bugless_auth.sessions import log_ended
from bugless_auth.store import IdentityStore
from bugless_core.auth_backend import AuthenticatorBackend, CertificateAuthenticator
from bugless_core.errors import BuglessError, Unavailable
from bugless_core.supervision import OutageLog, SupervisedLoop
from bugless_core.usernames import username_key

_log = logging.getLogger("bugless.auth")

#: How often each replica looks at its certificate backends' mappings by itself.
SWEEP_SECONDS = 10.0

#: End the live certificate sessions of backend $1 whose subject (the entry
#: that admitted the certificate) is not among $2, or is the store's subject of
#: another user, or whose entry's username (the key of $4 at the subject's
#: place in $2) is no longer its user's, with reason $3; the ended sessions'
#: users. A session recording no subject (before migration 0016) ends when no
#: subject of $2 names its user by that user's username. A subject's user is a
#: placeholder merged into an account: that account, whose the session is. A
#: user without a username key (written by a replica of the release before
#: migration 0011, during its rollout) is not ended for the want of one.
_END_UNMAPPED = """
UPDATE sessions s SET revoked_at = now(), revoked_reason = $3
WHERE s.authenticator = $1 AND s.certificate IS NOT NULL
  AND s.revoked_at IS NULL AND s.expires_at > now()
  AND NOT EXISTS (
      SELECT 1
      FROM unnest($2::text[], $4::text[]) AS m(subject, username_key)
      JOIN external_subjects x ON x.subject = m.subject
      JOIN users u ON u.user_id = x.user_id
      JOIN users su ON su.user_id = s.user_id
      WHERE x.authenticator = $1
        AND (s.subject IS NULL OR x.subject = s.subject)
        AND s.user_id = (CASE WHEN u.merged_into <> '' THEN u.merged_into ELSE u.user_id END)
        AND coalesce(su.username_key, m.username_key) = m.username_key
  )
RETURNING s.user_id
"""


#: The most sessions one refusal ends. A certificate has at most two live
#: sessions per user it was mapped to (``CERTIFICATE_SESSION_RENEW_FRACTION``);
#: any beyond this bound are ended by its next refusal.
REFUSED_SESSIONS_LIMIT = 16
#: End the live sessions made for certificate $1 (SHA-256 of its DER, hex),
#: at most $3 of them, with reason $2; the ended sessions' users. The inner
#: read goes through ``sessions_live_by_certificate`` (migration 0015), so a
#: certificate without sessions, the common case, reads one index page and
#: updates no row.
END_REFUSED = """
UPDATE sessions SET revoked_at = now(), revoked_reason = $2
WHERE session_id IN (
    SELECT session_id FROM sessions
    WHERE certificate = $1 AND revoked_at IS NULL AND expires_at > now()
    LIMIT $3
)
RETURNING user_id
"""
#: Why a refused certificate's sessions ended (their ``revoked_reason``).
REFUSED_REASON = "this certificate no longer maps to a bugless user (refused at a connection)"


def unmapped_reason(backend: str) -> str:
    """Why such a session ended (its ``revoked_reason``, in the log line)."""
    return (
        f"the {backend} mapping no longer maps the entry that admitted this certificate "
        "to this user"
    )


class MappedSessions:
    """Ends the certificate sessions of entries a changed mapping no longer maps to their user."""

    def __init__(
        self,
        store: IdentityStore,
        backends: Sequence[AuthenticatorBackend],
        *,
        metrics_registry: CollectorRegistry = REGISTRY,
    ) -> None:
        """Watch ``backends``' mappings (the certificate backends among them).

        ``metrics_registry`` is the service's, where the sweep's unexpected
        failures are counted.
        """
        self._store = store
        self._backends = [b for b in backends if isinstance(b, CertificateAuthenticator)]
        #: The list each backend's sessions were last brought in line with.
        self._done: dict[str, Mapping[str, str]] = {}
        self._task: asyncio.Task[None] | None = None
        #: A refusal that could not end its certificate's sessions, logged once per outage.
        self._refusal_outage = OutageLog(
            "ending the sessions of refused certificates",
            logger=_log,
            meanwhile="certificates are refused all the same; their sessions end at a later "
            "refusal, or when they expire",
            unit="refusals",
        )
        self._supervised = SupervisedLoop(
            "auth.mapped_sessions",
            registry=metrics_registry,
            outage=OutageLog(
                "ending sessions of unmapped certificates",
                logger=_log,
                meanwhile="tried again at the next sweep",
            ),
        )

    def start(self) -> None:
        """Sweep every :data:`SWEEP_SECONDS` until :meth:`stop` (with a certificate backend)."""
        if self._backends and self._task is None:
            self._task = asyncio.create_task(self._every_sweep())

    async def stop(self) -> None:
        """Stop sweeping (one under way is cancelled: a single UPDATE, done or not)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _every_sweep(self) -> None:
        wait = SWEEP_SECONDS
        while True:
            await asyncio.sleep(wait)
            wait = SWEEP_SECONDS
            try:
                await self.end_unmapped()
            except BuglessError as exc:  # the database is away
                self._supervised.unavailable(exc)
            except Exception as exc:  # a bug: logged and counted once, the sweeps go on
                wait = self._supervised.failed(exc, at_least=SWEEP_SECONDS)
            else:
                self._supervised.succeeded()

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
            rows = await self._end(backend.name, subjects, reason)
            self._done[backend.name] = subjects
            users: dict[str, int] = {}
            for row in rows:
                users[row["user_id"]] = users.get(row["user_id"], 0) + 1
            for user_id, count in users.items():
                log_ended(user_id, count, reason)
            ended += len(rows)
        return ended

    async def recheck(self) -> None:
        """Bring every backend's sessions in line again although no mapping changed.

        After a mapping entry's subject moved to the user its username now
        names (:meth:`IdentityStore.resolve
        <bugless_auth.store.IdentityStore.resolve>`), the sessions that entry
        had admitted for the user it left end here rather than at the next
        change of the mapping. A database that cannot be reached is logged;
        the sweep does it at its next round.
        """
        self._done.clear()
        try:
            await self.end_unmapped()
        except Unavailable as exc:
            _log.warning("ending the sessions of a user a mapping entry left: %s", exc.message)

    async def end_refused(self, fingerprint: str) -> int:
        """End the live sessions of a certificate just refused as unmapped; how many.

        Called when no certificate backend and no people CA maps the
        certificate (``CERTIFICATE_NOT_MAPPED``): its sessions, whoever they
        were made for, would otherwise stay live, listed and accepted until
        they expire, although the certificate can make no new one. One
        bounded statement through the index of live certificate sessions
        (:data:`END_REFUSED`); a certificate that never had a session
        changes no row.

        A database that cannot be reached ends nothing and raises nothing
        (logged once per outage): the certificate is refused all the same,
        rather than told to try again, and its sessions end at a later
        refusal or expire.
        """
        try:
            rows: list[asyncpg.Record] = await self._store.run(
                lambda conn: conn.fetch(
                    END_REFUSED, fingerprint, REFUSED_REASON, REFUSED_SESSIONS_LIMIT
                ),
                transaction=False,
            )
        except Unavailable as exc:
            self._refusal_outage.failed(exc)
            return 0
        self._refusal_outage.recovered()
        users: dict[str, int] = {}
        for row in rows:
            users[row["user_id"]] = users.get(row["user_id"], 0) + 1
        for user_id, count in users.items():
            log_ended(user_id, count, REFUSED_REASON)
        return len(rows)

    async def _end(
        self, backend: str, mapped: Mapping[str, str], reason: str
    ) -> list[asyncpg.Record]:
        subjects = sorted(mapped)
        keys = [username_key(mapped[subject]) for subject in subjects]
        rows: list[asyncpg.Record] = await self._store.run(
            lambda conn: conn.fetch(_END_UNMAPPED, backend, subjects, reason, keys),
            transaction=False,
        )
        return rows
