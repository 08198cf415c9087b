"""Checking identities after a sign-in: tokens, assertions for services, authorisation.

The calls every request pays for once someone has signed in, as a mixin of
:class:`~bugless_auth.service.AuthService`: what a session token stands for
now (:meth:`IdentityChecks.validate_token`, asked on every frontend request),
an identity assertion for a service acting for a user, the keys and ended
sessions the Model verifies assertions with, and whether an identity holds a
permission. Kept apart from the sign-in flows (:mod:`bugless_auth.service`),
which make the sessions these calls check, as the user-management calls and
the look-ups are (:mod:`bugless_auth.user_admin`, :mod:`bugless_auth.user_lookups`).
"""

from __future__ import annotations

import datetime
import secrets
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bugless_auth.policy import ADMIN, Decision
from bugless_auth.session_kinds import SERVICE
from bugless_core.assertions import Scope
from bugless_core.errors import NotFound, PermissionDenied, Unauthenticated
from bugless_proto import v1

if TYPE_CHECKING:
    from bugless_auth._cache import TtlCache
    from bugless_auth.assertions import AssertionIssuer
    from bugless_auth.directory import CachedUser, UserDirectory
    from bugless_auth.policy import Policy
    from bugless_auth.sessions import SessionStore
    from bugless_auth.store import UserRecord
    from bugless_auth.tokens import SessionClaims, TokenAuthority
    from bugless_auth.unsubscribe import UnsubscribeTokens

#: How long a one-click unsubscribe's scoped assertion lives: one mute call.
UNSUBSCRIBE_ASSERTION_TTL_SECONDS = 60.0

DISABLED = "this account is disabled; ask a bugless administrator"
SESSION_ENDED = "this session has ended (signed out, or ended by an administrator): sign in again"


class IdentityChecks:
    """Validation, assertions and authorisation of :class:`~bugless_auth.service.AuthService`."""

    if TYPE_CHECKING:
        tokens: TokenAuthority
        policy: Policy
        sessions: SessionStore
        directory: UserDirectory
        assertions: AssertionIssuer
        unsubscribe_tokens_signer: UnsubscribeTokens
        _valid_tokens: TtlCache[str, SessionClaims]

        async def record_of(self, user_id: str) -> UserRecord:
            """The store's record of a user id (:meth:`AuthService.record_of`)."""

    def _identity(self, cached: CachedUser, authenticator: str) -> v1.Identity:
        groups = list(cached.record.groups)
        return v1.Identity(
            user=cached.message,
            groups=groups,
            authenticator=authenticator,
            permissions=self.policy.permissions(groups),
        )

    # ---- tokens ----

    async def validate_token(self, token: str, *, with_assertion: bool = False) -> v1.Identity:
        """The identity a token stands for, as the store knows it now.

        With ``with_assertion`` it carries a fresh identity assertion for the
        token's session, for the frontend to forward to the Model.

        The signature check is cached; whether the token's session is still
        live is asked of the database every time (the revocation list every
        replica shares), so an ended session is refused at once.

        Raises:
            Unauthenticated: invalid or expired token, an ended session
                (reason ``SESSION_ENDED``), or a disabled or vanished user.
        """
        if not token:
            raise Unauthenticated("token: required; sign in to get one", reason="INVALID_TOKEN")
        claims = self._valid_tokens.get(token)
        if claims is None:
            claims = self.tokens.verify(token)
            self._valid_tokens.put(token, claims)
        elif claims.expires_at <= datetime.datetime.now(datetime.UTC).timestamp():
            self._valid_tokens.discard(token)
            claims = self.tokens.verify(token)  # raises "expired"
        if not await self.sessions.is_live(claims.token_id):
            raise Unauthenticated(SESSION_ENDED, reason="SESSION_ENDED")
        cached = await self.directory.get(claims.user_id)
        if cached is None:
            raise Unauthenticated("the token's user no longer exists", reason="INVALID_TOKEN")
        if cached.record.disabled:
            raise Unauthenticated(DISABLED, reason="USER_DISABLED")
        identity = self._identity(cached, claims.authenticator)
        if with_assertion:
            return self.assertions.with_assertion(identity, claims.token_id)
        return identity

    # ---- identity assertions ----

    async def _assertable(self, user_id: str) -> CachedUser:
        """``user_id``'s cached record, unless they may have no assertion.

        Raises:
            NotFound: no such user.
            PermissionDenied: disabled, or a placeholder; the message says which.
        """
        cached = await self.directory.get(user_id)
        if cached is None:
            raise NotFound(f"user_id: no user has the id {user_id!r}")
        if cached.record.disabled or cached.record.placeholder:
            what = "disabled" if cached.record.disabled else "a placeholder"
            raise PermissionDenied(
                f"user {user_id!r} is {what}: no assertion is issued",
                reason="USER_DISABLED" if cached.record.disabled else "USER_PLACEHOLDER",
            )
        return cached

    async def issue_assertion(self, user_id: str, *, requested_by: str = "") -> v1.Identity:
        """An identity with an assertion for ``user_id``, for a service acting for them.

        For services acting for a user without that user's session (the
        notifier as a recipient, an import job); who may ask is the ACCESS
        table's business. The assertion gets a session of its own, recorded
        like a sign-in's (authenticator ``service``, the asking service as
        its client address) and as long-lived as the assertion: whatever
        ends all of the user's sessions — disabling them (by an admin, the
        CLI or a directory re-sync), "sign out everywhere", an admin ending
        their sessions — ends it too, and the Model refuses it within its
        ``--assertion-refresh-seconds``. A disabled user gets none. For a
        placeholder merged into an account (who answers as that account),
        the session is the account's: ending the account's ends it.

        Whether the user may have one is decided on their row in the
        database as the session is recorded, not on this replica's cached
        record, which may not have heard of a disable yet (a feed poll,
        1-2 s; up to ``cache_ttl_seconds`` if its follower stalls): a session
        recorded after the disable had ended the user's sessions would have
        outlived it, and the Model would have taken the assertion for its
        whole lifetime. The cache still answers for whom it already knows to
        be refused, without a query.

        Raises:
            NotFound: no such user.
            PermissionDenied: the user (a merged placeholder: its account) is
                disabled, or is a placeholder merged into no account; the
                message says which.
        """
        cached = await self._assertable(user_id)
        session_id = secrets.token_urlsafe(18)
        identity = self.assertions.with_assertion(self._identity(cached, SERVICE), session_id)
        expires = identity.assertion_expires_at
        refused = await self.sessions.record(
            session_id,
            user_id=user_id,
            authenticator=SERVICE,
            client_address=requested_by,
            expires_at=expires.timestamp() if expires is not None else time.time(),
        )
        if refused is not None:
            if refused.reason == "USER_UNKNOWN":
                raise NotFound(f"user_id: no user has the id {user_id!r}")
            raise PermissionDenied(
                f"user {user_id!r} {refused.detail}: no assertion is issued",
                reason=refused.reason,
            )
        return identity

    # ---- one-click unsubscribe ----

    def unsubscribe_tokens(self, targets: Sequence[v1.UnsubscribeTarget]) -> list[str]:
        """A token per target (person, issue), for the unsubscribe links of their mails.

        Signing only: whether the person may still view the issue or is
        enabled is judged when one is redeemed (:meth:`redeem_unsubscribe`).
        """
        return [self.unsubscribe_tokens_signer.issue(t.user_id, t.issue_id) for t in targets]

    async def redeem_unsubscribe(self, token: str, *, check_only: bool) -> v1.UnsubscribeGrant:
        """What ``token`` grants, and unless ``check_only`` the person's identity and assertion.

        The web uses the assertion to mute that one issue for the person,
        with no session of theirs (the link in their mail is the authority).
        The assertion is scoped (``scp``): the Model takes it for
        ``SetIssueMute(issue_id=<the token's>, muted=true)`` and refuses it
        for any other call, so a web that misused it could do no more than
        the link already lets anyone holding the mail do. It lives
        :data:`UNSUBSCRIBE_ASSERTION_TTL_SECONDS` and records no session:
        one row a click, kept until it expired, would bound nothing that
        the scope and the short life do not, and ending the person's
        sessions need not stop a mute. A disabled person gets none (as the
        cached record says: a mute by someone disabled a moment ago harms
        nothing).

        Raises:
            InvalidArgument: the token is forged, altered or expired (the
                message says which).
            NotFound, PermissionDenied: no such person, or disabled, as
                :meth:`issue_assertion`.
        """
        user_id, issue_id = self.unsubscribe_tokens_signer.verify(token)
        grant = v1.UnsubscribeGrant(user_id=user_id, issue_id=issue_id)
        if check_only:
            return grant
        cached = await self._assertable(user_id)
        grant.identity = self.assertions.with_assertion(
            self._identity(cached, SERVICE),
            "",
            scope=Scope(method="SetIssueMute", fields=(("issue_id", issue_id), ("muted", True))),
            ttl_seconds=UNSUBSCRIBE_ASSERTION_TTL_SECONDS,
        )
        return grant

    async def user_groups(self, user_ids: Sequence[str]) -> v1.GetUserGroupsResponse:
        """What an identity assertion for each user would carry now, for the Model.

        The Model judges who can view a component (``CheckViewers``) from the
        groups and ``admin`` permission of people other than its caller,
        which no signed assertion it holds tells it; this answers them by the
        same rule :meth:`issue_assertion` signs them by (the directory's
        record, the policy's permissions), without making a session. Read
        from the replica's cache like ``GetUsers``: a group change reaches
        the answer a feed poll later, as it reaches new assertions.

        An id no user has is answered ``UNKNOWN``, a disabled user
        ``DISABLED`` and an unmerged placeholder ``PLACEHOLDER`` (no groups):
        none of them can see the issue or get mail about it, and none is an
        error, so one stale id in a CC list does not hide the others. A
        placeholder merged into an account is that account (ACTIVE with its
        groups) and names it in ``account_id``: issues keep the placeholder's
        id, while access lists name the person by the account's.
        """
        wanted = list(dict.fromkeys(user_ids))
        found, _ = await self.directory.get_many(wanted)
        records = {c.record.user_id: c.record for c in found}
        answers = []
        for user_id in wanted:
            record = records.get(user_id)
            if record is None:
                standing = v1.UserStanding.UNKNOWN
            elif record.disabled:
                standing = v1.UserStanding.DISABLED
            elif record.placeholder:
                standing = v1.UserStanding.PLACEHOLDER
            else:
                groups = list(record.groups)
                answers.append(
                    v1.UserGroups(
                        user_id=user_id,
                        standing=v1.UserStanding.ACTIVE,
                        groups=groups,
                        admin=ADMIN in self.policy.permissions(groups),
                        account_id=record.alias_of,
                    )
                )
                continue
            answers.append(v1.UserGroups(user_id=user_id, standing=standing))
        return v1.GetUserGroupsResponse(users=answers)

    async def verification_keys(self) -> v1.VerificationKeys:
        """The assertion keys and the sessions ended within an assertion's lifetime."""
        revoked = await self.sessions.revoked_within(self.assertions.ttl_seconds)
        return self.assertions.verification_keys(revoked)

    # ---- authorisation ----

    async def authorize(
        self, token: str, user_id: str, groups: Sequence[str], permission: str
    ) -> Decision:
        """Whether the identity (by token, or by user id and groups) holds ``permission``.

        With a user id and no groups, the user's groups as last seen are used.
        A disabled user is never allowed anything.
        """
        if token:
            identity = await self.validate_token(token)
            return self.policy.decide(identity.groups, permission)
        if groups:
            return self.policy.decide(groups, permission)
        cached = await self.directory.get(user_id)
        if cached is None or cached.record.disabled:
            return Decision(False)
        return self.policy.decide(cached.record.groups, permission)

    async def caller_record(self, token: str) -> tuple[v1.Identity, UserRecord]:
        """The identity behind a token, and its user's record."""
        identity = await self._caller(token)
        return identity, await self.record_of(identity.user.user_id if identity.user else "")

    def may(self, identity: v1.Identity, permission: str) -> bool:
        """Whether an identity's groups grant a global permission."""
        return self.policy.decide(identity.groups, permission).allowed

    async def _caller(self, token: str) -> v1.Identity:
        if not token:
            raise Unauthenticated("token: required for this call; sign in first")
        return await self.validate_token(token)

    async def _require(self, token: str, permission: str, action: str) -> v1.Identity:
        caller = await self._caller(token)
        if not self.policy.decide(caller.groups, permission).allowed:
            raise PermissionDenied(f"{action} needs the {permission} permission")
        return caller
