"""The directory re-sync: identity changes take effect without waiting for a sign-in.

Without it a directory user who is disabled, renamed or removed from a group
keeps their sessions (12 hours) and their old name and groups until they
next sign in. So every ``resync_seconds`` (an LDAP option, 300 by default)
the Authenticator asks each backend that has a directory
(:attr:`~bugless_core.auth_backend.AuthenticatorBackend.resync_seconds`) who
the users it has seen sign in are *now*, 50 subjects per directory search:

* **renamed / changed**: the user record is refreshed (username, display
  name, email, groups) exactly as a sign-in would, keeping the opaque id, so
  nothing in the Model changes and every page shows the new name;
* **lost a group that matters** (one the policy grants a permission to):
  every session of the user ends (they sign in again with what they have
  now), in the transaction that writes the refreshed record
  (:mod:`bugless_auth.group_loss`, which says what that covers; a sign-in
  that brings the new groups first does the same). Other groups (ACL
  principals) take effect without that: every token validation reads the
  groups of the refreshed record;
* **no longer listed** (deleted, or excluded by ``user_filter``, e.g. an
  account lock): the user is disabled (``directory_disabled``), every
  session ends and every people-CA certificate (API access) is revoked;
  when the directory lists them again the re-sync re-enables them (a user
  an administrator disabled stays disabled).

Why a sweep of the known users rather than only entries whose
``modifyTimestamp`` moved: a deleted entry leaves no timestamp to find, an
entry locked out of the user filter is not found by a filtered search, and
a group change (``member`` on the group entry) does not move the user
entry's timestamp, so a timestamp-only search would miss exactly the changes
that must revoke. The sweep costs one search per 50 known users per interval.

One replica at a time runs a backend's rounds: the one holding the lease
``directory-resync:<backend>`` in the schema's ``bugless_leases``
(:mod:`bugless_core.leases`), taken again at each round for 1.5 intervals
and given back when the replica stops. The others skip their rounds, so N
replicas do not sweep the directory N times per interval; when the holder
dies its lease expires and another replica takes the next round (within two
intervals).

An outage never disables anyone: a round whose searches fail is abandoned
(logged, retried next interval), and a round in which more than half of at
least :data:`SAFETY_MIN_USERS` users would vanish at once is refused as a
misconfiguration (a wrong base DN, a service account that lost read access).
The LDAP backend also refuses to answer "none of them" when its every-user
filter lists no entry at all (``LdapBackend.current_identities``): that
stops the round before a small batch (fewer than :data:`SAFETY_MIN_USERS`)
is disabled whole.
A round that fails on an error nobody expected (a bug, an untranslated
database error) is supervised as ``auth.directory_resync:<backend>``
(:class:`~bugless_core.supervision.SupervisedLoop`: logged once with its
traceback, counted in ``bugless_background_failures_total``) and the rounds
go on, at the interval or the failures' backoff, whichever is longer: a
replica never stops re-syncing until it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from prometheus_client import REGISTRY, CollectorRegistry

from bugless_auth.directory import UserDirectory
from bugless_auth.disabling import Ends, directory_disable
from bugless_auth.group_loss import GroupLoss
from bugless_auth.store import IdentityStore, UserRecord
from bugless_core import leases
from bugless_core.auth_backend import AuthenticatorBackend, ExternalIdentity
from bugless_core.errors import BuglessError
from bugless_core.supervision import OutageLog, SupervisedLoop

_log = logging.getLogger("bugless.auth")

#: Subjects per directory search.
BATCH = 50
#: A round that would make more than half of at least this many users vanish is refused.
SAFETY_MIN_USERS = 4
#: How long :meth:`DirectoryResync.stop` lets a round in progress finish before cancelling it.
STOP_WAIT_SECONDS = 5.0


@dataclass
class ResyncReport:
    """What one round changed (for logs and tests)."""

    checked: int = 0
    refreshed: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)
    enabled: list[str] = field(default_factory=list)
    revoked: dict[str, str] = field(default_factory=dict)


class DirectoryResync:
    """Re-reads one backend's users on an interval and applies what changed."""

    def __init__(
        self,
        backend: AuthenticatorBackend,
        store: IdentityStore,
        directory: UserDirectory,
        *,
        matters: Callable[[str], bool],
        interval: float,
        holder: str | None = None,
        metrics_registry: CollectorRegistry = REGISTRY,
    ) -> None:
        """Sync ``backend``'s users every ``interval`` s; ``matters(group)``: losing it revokes.

        ``holder`` names this replica in the lease (default: a new random
        name); ``metrics_registry`` is the service's, where the supervision
        counts unexpected failures.
        """
        self._backend = backend
        self._store = store
        self._directory = directory
        self._matters = matters
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._holder = holder or leases.new_holder()
        self._lease = f"directory-resync:{backend.name}"
        self._lease_ms = max(1_000, int(interval * 1_500))
        #: Rounds this replica ran (others skip theirs while it holds the lease).
        self.rounds = 0
        self.supervised = SupervisedLoop(
            f"auth.directory_resync:{backend.name}",
            registry=metrics_registry,
            outage=OutageLog(
                f"directory re-sync of {backend.name}",
                logger=_log,
                meanwhile="rounds skipped until it answers",
            ),
        )

    def start(self) -> None:
        """Run rounds in the background until :meth:`stop`."""
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self._every_interval())

    async def stop(self) -> None:
        """Stop after the current round (cancelled only if it outlasts :data:`STOP_WAIT_SECONDS`).

        A round is let finish rather than cancelled in the middle of a
        directory search: the LDAP client's connection is closed right after
        this, and tearing a search down under it is what native clients
        handle worst.
        """
        if self._task is not None:
            self._stopping.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), STOP_WAIT_SECONDS)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
            # Hand the re-sync over now rather than when the lease expires.
            with contextlib.suppress(BuglessError):
                await self._store.release_lease(self._lease, self._holder)

    async def _every_interval(self) -> None:
        wait = self.interval
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), wait)
            if self._stopping.is_set():
                return
            wait = self.interval
            try:
                report = await self._leased_round()
            except BuglessError as exc:  # the directory or the database is away
                self.supervised.unavailable(exc)
                continue
            except Exception as exc:  # a bug, an untranslated error: logged and counted once
                wait = self.supervised.failed(exc, at_least=self.interval)
                continue
            self.supervised.succeeded()
            if report is None:
                continue  # another replica runs this backend's rounds
            if report.refreshed or report.disabled or report.enabled:
                _log.info(
                    "directory re-sync of %s: %d checked, %d changed, %d disabled, %d re-enabled",
                    self._backend.name,
                    report.checked,
                    len(report.refreshed),
                    len(report.disabled),
                    len(report.enabled),
                )

    async def _leased_round(self) -> ResyncReport | None:
        """One round if this replica holds (or takes) the lease; None if another one does."""
        if not await self._store.take_lease(self._lease, self._holder, self._lease_ms):
            return None
        report = await self.run_once()
        self.rounds += 1
        return report

    async def run_once(self) -> ResyncReport:
        """One round over every user of the backend.

        Raises:
            Unavailable: the directory could not be asked (nothing was changed
                by the failed batch; earlier batches stay applied).
        """
        report = ResyncReport()
        after = ""
        while True:
            page = await self._store.subjects_of(self._backend.name, after=after, limit=500)
            if not page:
                return report
            after = page[-1][0]
            for start in range(0, len(page), BATCH):
                await self._batch(page[start : start + BATCH], report)

    async def _batch(self, batch: Sequence[tuple[str, str]], report: ResyncReport) -> None:
        current = await self._backend.current_identities([subject for subject, _ in batch])
        before = {r.user_id: r for r in await self._store.users_by_ids([u for _, u in batch])}
        gone = [(s, u) for s, u in batch if s not in current and u in before]
        if len(batch) >= SAFETY_MIN_USERS and len(gone) * 2 > len(batch):
            _log.error(
                "directory re-sync of %s: %d of %d users would vanish at once; refused "
                "(check base_dn, user_filter and the service account's read access)",
                self._backend.name,
                len(gone),
                len(batch),
            )
            return
        report.checked += len(batch)
        for subject, user_id in batch:
            old = before.get(user_id)
            if old is None or old.placeholder:
                continue
            identity = current.get(subject)
            if identity is None:
                await self._vanished(old, report)
            else:
                await self._listed(old, identity, report)

    async def _vanished(self, old: UserRecord, report: ResyncReport) -> None:
        reason = f"no longer in the {self._backend.name} directory"
        # As an administrator's disable does, in its one transaction: their
        # sessions and API certificates end too.
        ends = Ends(session_reason=reason, by="directory re-sync", certificate_reason=reason)
        done = await directory_disable(self._store, old.user_id, ends)
        if done is None:
            return  # disabled already
        self._directory.remember(done.record)
        report.disabled.append(old.user_id)
        report.revoked[old.user_id] = reason

    async def _listed(
        self, old: UserRecord, identity: ExternalIdentity, report: ResyncReport
    ) -> None:
        record = old
        if old.disabled:
            enabled = await self._store.directory_enable(old.user_id)
            if enabled is not None:
                report.enabled.append(old.user_id)
                record = enabled
        if (
            identity.username != record.username
            or identity.display_name != record.display_name
            or identity.email != record.email
            or tuple(identity.groups) != tuple(record.groups)
            or identity.bot != record.bot
        ):
            loss = GroupLoss(self._matters, f"in the {self._backend.name} directory")
            try:
                # The refresh and the end of the sessions commit together: a
                # replica that died between them left the record without the
                # group and the sessions live, and no later round (which
                # compares with that record) would have ended them.
                record, released = await self._store.resolve(
                    identity, self._backend.name, sign_in=False, then=loss
                )
            except BuglessError as exc:  # a username another directory holds
                _log.warning("directory re-sync: %s not refreshed: %s", old.user_id, exc)
                return
            for user_id in released:
                self._directory.forget(user_id)
            report.refreshed.append(old.user_id)
            if reason := loss.logged(old.user_id):
                report.revoked[old.user_id] = reason
        self._directory.remember(record)
