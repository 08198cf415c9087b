"""Losing a group the policy names ends the user's sessions, in the transaction that records it.

A user removed from a group that grants a permission (``--policy``) keeps,
in every session they have, what they were signed in with: the identity
assertions already issued carry the group for their lifetime, and a
frontend's token cache keeps the old identity. So whoever writes the
refreshed record that no longer has the group — the directory re-sync
(:mod:`bugless_auth.resync`), or a sign-in that brings the new groups
(:meth:`bugless_auth.service.AuthService._signed_in`) — ends all of the
user's sessions *in the same transaction* (:meth:`IdentityStore.resolve
<bugless_auth.store.IdentityStore.resolve>`'s ``then``): either the record
says the group is gone and no session signed in with it lives, or neither
changed. The groups before are read in that transaction, with the user's row
locked, so whichever of a sign-in and a re-sync writes the loss first ends
the sessions, and the other sees nothing lost.

Ending the sessions covers what was issued for them: the Model refuses an
ended session's assertions (``GetVerificationKeys``' revoked list), and
people-CA certificate sign-ins and ``IssueAssertion`` have sessions of their
own. The certificates themselves stay valid: they name the person, not
their groups, and a sign-in with one reads the refreshed record.

Locks are taken in :mod:`bugless_auth.disabling`'s order: the user's row,
the feed head, the sessions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bugless_auth.sessions import end_user_sessions, log_ended
from bugless_auth.store import UserRecord
from bugless_auth.user_writes import UserWrites


class GroupLoss:
    """A ``then`` for :meth:`IdentityStore.resolve`: ends the sessions if a group that matters went.

    Attributes:
        reason: Why the sessions ended, once the transaction committed ("":
            nothing that matters was lost).
        sessions: How many ended.
    """

    def __init__(self, matters: Callable[[str], bool], seen: str) -> None:
        """``matters(group)``: losing it ends the sessions; ``seen``: where, for the reason."""
        self._matters = matters
        self._seen = seen
        self.reason = ""
        self.sessions = 0

    async def __call__(self, writes: UserWrites, before: Sequence[str], record: UserRecord) -> None:
        """In the refresh's transaction: end ``record``'s sessions if it lost such a group."""
        self.reason, self.sessions = "", 0  # a retried attempt starts over
        lost = sorted(g for g in set(before) - set(record.groups) if self._matters(g))
        if lost:
            self.reason = f"removed from {', '.join(lost)} {self._seen}"
            await writes.log()  # the feed head before the sessions (the lock order above)
            self.sessions = await end_user_sessions(writes.conn, record.user_id, self.reason)

    def logged(self, user_id: str) -> str:
        """After the commit: log the sessions ended, if any; the reason ("" if none)."""
        if self.reason:
            log_ended(user_id, self.sessions, self.reason)
        return self.reason
