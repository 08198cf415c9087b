"""Managing users: local accounts, disabling, ending sessions, imported people.

The calls an administrator (``manage_users``), an import job
(``import_issues``) or a signed-in user managing their own account makes, as
a mixin of :class:`~bugless_auth.service.AuthService`, and
:func:`create_local_user`, which ``bugless auth user add`` shares with the
gRPC call. Kept apart from authentication, tokens and look-ups, which every
request pays for, so each reads on its own.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from bugless_auth import disabling, placeholders
from bugless_auth.disabling import Ends
from bugless_auth.passwords import PasswordHashes
from bugless_auth.policy import IMPORT_ISSUES, MANAGE_USERS
from bugless_auth.session_kinds import ALL_SESSIONS, BUILT_IN_KINDS
from bugless_auth.sessions import (
    CERTIFICATE_LAST_USED_GRANULARITY_SECONDS,
    LAST_USED_GRANULARITY_SECONDS,
)
from bugless_auth.store import IdentityStore, UserRecord
from bugless_core.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from bugless_core.usernames import (
    USERNAME_MAX_LENGTH,
    USERNAME_PUNCTUATION,
    is_valid_username,
    username_key,
    username_problem,
)
from bugless_proto import v1

if TYPE_CHECKING:
    import asyncpg

    from bugless_auth._cache import TtlCache
    from bugless_auth.directory import UserDirectory
    from bugless_auth.mapped_sessions import MappedSessions
    from bugless_auth.people import PeopleCertificates
    from bugless_auth.policy import Policy
    from bugless_auth.sessions import SessionStore
    from bugless_auth.settings import AuthSettings
    from bugless_auth.tokens import SessionClaims, TokenAuthority
    from bugless_core.auth_backend import AuthenticatorBackend

#: ListSessions' page size when the request asks for none, and the most it may ask for.
SESSIONS_PAGE_SIZE = 50
MAX_SESSIONS_PAGE_SIZE = 500


def check_username(username: str, field: str = "username") -> None:
    """Refuse a username the local store would not accept for a new user.

    The grammar is :func:`bugless_core.usernames.is_valid_username`, the one
    ``@mentions`` and search are built from, ending with a letter, digit or
    mark as a mention does, so every new local user can be mentioned and
    searched for. Then the rule every directory's name follows,
    :func:`~bugless_core.usernames.username_problem`: no compatibility
    characters, one script (or Latin with the CJK scripts written together),
    so an administrator cannot create "paul" with a Cyrillic "a" (U+0430)
    or "admin" with a fullwidth "a" (U+FF41), which pass for a colleague,
    and no local name is one a directory could never hand over. Only new
    names are checked: existing accounts, whatever an earlier release let
    in, keep signing in. (The directory rule does not ask for the mention
    ending: their existing users keep signing in.)

    Raises:
        InvalidArgument: naming what is accepted, or what is wrong with it.
    """
    # A mention ends at the name's last letter, digit or mark ("ask @ann."), so a
    # new local name ending in . _ @ + - could never be mentioned whole.
    if not is_valid_username(username) or username[-1] in USERNAME_PUNCTUATION:
        raise InvalidArgument(
            f"{field}: {username!r} is not a valid username (1-{USERNAME_MAX_LENGTH} "
            "characters: letters and digits of any script, combining marks and . _ @ + -, "
            "starting with a letter or digit and ending with a letter, digit or mark)"
        )
    problem = username_problem(username)
    if problem is not None:
        raise InvalidArgument(f"{field}: {username!r} cannot be a username: it {problem}")


def session_message(row: asyncpg.Record, kinds: Mapping[str, str], current: str) -> v1.Session:
    """A ``sessions`` row (:data:`bugless_auth._session_queries.COLUMNS`) on the wire.

    ``kinds`` maps an authenticator name to its kind; ``current`` is the
    session id of the token the request carries.
    """
    return v1.Session(
        session_id=row["session_id"],
        authenticator=row["authenticator"],
        kind=kinds.get(row["authenticator"], ""),
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        expires_at=row["expires_at"],
        client_address=row["client_address"],
        current=row["session_id"] == current,
    )


def _page_position(position: list[Any]) -> tuple[datetime.datetime, str]:
    """The (created_at, session_id) a ListSessions page token carries."""
    try:
        created, session_id = position
        return datetime.datetime.fromisoformat(created), str(session_id)
    except (TypeError, ValueError):
        raise InvalidArgument("page.page_token: not a page of ListSessions") from None


def who(identity: v1.Identity) -> str:
    """``username (user id)`` of an identity, for revocation reasons and logs."""
    user = identity.user or v1.User()
    return f"{user.username} ({user.user_id})"


async def create_local_user(
    store: IdentityStore,
    hashes: PasswordHashes,
    *,
    username: str,
    display_name: str,
    email: str,
    password: str,
    groups: Sequence[str],
    min_password_length: int,
    bot: bool = False,
) -> UserRecord:
    """Validate and add a local user; shared by the gRPC call and ``bugless auth user add``."""
    check_username(username)
    for group in groups:
        if not group or group != group.strip():
            raise InvalidArgument(f"groups: {group!r} is not a group name")
    hashes.check_acceptable(password, min_password_length)
    return await store.create_local_user(
        username=username,
        display_name=display_name or username,
        email=email,
        groups=list(dict.fromkeys(groups)),
        password_hash=await hashes.hash(password),
        bot=bot,
    )


class UserAdministration:
    """The user-management calls of :class:`~bugless_auth.service.AuthService`."""

    if TYPE_CHECKING:
        settings: AuthSettings
        store: IdentityStore
        backends: list[AuthenticatorBackend]
        tokens: TokenAuthority
        hashes: PasswordHashes
        policy: Policy
        sessions: SessionStore
        mapped_sessions: MappedSessions
        people: PeopleCertificates
        directory: UserDirectory
        _valid_tokens: TtlCache[str, SessionClaims]

        async def _caller(self, token: str) -> v1.Identity: ...

        async def _require(self, token: str, permission: str, action: str) -> v1.Identity: ...

    # ---- import (issue 21) ----

    async def match_import_users(
        self,
        token: str,
        source: str,
        people: Sequence[v1.SourcePerson],
        *,
        create_placeholders: bool,
    ) -> v1.MatchImportUsersResponse:
        """Match an imported tracker's people; placeholders for the rest (import_issues)."""
        await self._require(token, IMPORT_ISSUES, "matching imported people")
        placeholders.check_people(source, people)
        matches = await placeholders.match_people(
            self.store, source, people, create_placeholders=create_placeholders
        )
        return v1.MatchImportUsersResponse(
            matches=[
                v1.ImportUserMatch(
                    user=self.directory.remember(m.user).message if m.user else None,
                    matched_by=m.matched_by,
                )
                for m in matches
            ]
        )

    async def merge_placeholder(self, token: str, placeholder: str, into: str) -> v1.User:
        """Map a placeholder to a real account (manage_users); history is not rewritten."""
        await self._require(token, MANAGE_USERS, "merging placeholder accounts")
        record = await placeholders.merge_placeholder(self.store, placeholder, into)
        self.directory.forget(record.user_id)
        # The account's merged ids changed: its next look-up by name reads them.
        self.directory.forget(record.alias_of)
        return self.directory.remember(record).message

    # ---- local users ----

    def _require_local(self) -> None:
        if not any(b.name == "local" for b in self.backends):
            raise FailedPrecondition(
                "the local authenticator is not enabled on this server (--authenticator local,...)"
            )

    async def create_local_user(
        self,
        token: str,
        *,
        username: str,
        display_name: str,
        email: str,
        password: str,
        groups: Sequence[str],
    ) -> v1.User:
        """Add a local user (needs manage_users)."""
        await self._require(token, MANAGE_USERS, "creating users")
        self._require_local()
        record = await create_local_user(
            self.store,
            self.hashes,
            username=username,
            display_name=display_name,
            email=email,
            password=password,
            groups=groups,
            min_password_length=self.settings.min_password_length,
        )
        return self.directory.remember(record).message

    async def set_local_password(self, token: str, username: str, password: str) -> v1.User:
        """Change a local password: one's own, or anyone's with manage_users."""
        caller = await self._caller(token)
        own = caller.user is not None and username_key(caller.user.username) == username_key(
            username
        )
        if not own and not self.policy.decide(caller.groups, MANAGE_USERS).allowed:
            raise PermissionDenied(
                "changing another user's password needs the manage_users permission"
            )
        self._require_local()
        self.hashes.check_acceptable(password, self.settings.min_password_length)
        record = await self.store.set_local_password(username, await self.hashes.hash(password))
        return self.directory.remember(record).message

    async def set_user_disabled(self, token: str, username: str, disabled: bool) -> v1.User:
        """Disable or re-enable a user of any backend (needs manage_users)."""
        caller = await self._require(token, MANAGE_USERS, "disabling users")
        ends = Ends(session_reason=f"disabled by {who(caller)}", by=who(caller))
        done = await disabling.set_disabled(self.store, username, disabled, ends)
        return self.directory.remember(done.record).message

    # ---- sessions ----

    async def revoke_sessions(self, token: str, *, everywhere: bool, username: str) -> int:
        """End sessions; how many were live.

        * neither ``everywhere`` nor ``username``: the token's own session
          (sign-out). An expired or already ended session is not an error:
          signing out twice, or after expiry, ends nothing and says so (0).
        * ``everywhere``: every session of the token's user (the token must
          still be live: an ended session cannot end the others).
        * ``username``: every session of that user (needs manage_users).

        Raises:
            Unauthenticated: the token is not one this Authenticator signed.
            PermissionDenied: ``username`` without manage_users.
            NotFound: nobody has that username.
        """
        if username:
            caller = await self._require(token, MANAGE_USERS, "ending another user's sessions")
            found = await self.store.users_by_usernames([username])
            if not found:
                raise NotFound(f"username: no bugless user is called {username!r}")
            return await self.sessions.revoke_user(found[0].user_id, f"ended by {who(caller)}")
        if everywhere:
            caller = await self._caller(token)
            user_id = caller.user.user_id if caller.user is not None else ""
            return await self.sessions.revoke_user(user_id, "signed out everywhere")
        try:
            claims = self.tokens.verify(token)
        except Unauthenticated as exc:
            if exc.reason == "TOKEN_EXPIRED":
                return 0
            raise
        self._valid_tokens.discard(token)
        return await self.sessions.revoke(claims.token_id, "signed out")

    def _session_kinds(self) -> dict[str, str]:
        return {**BUILT_IN_KINDS, **{b.name: b.kind.value for b in self.backends}}

    async def list_sessions(
        self,
        token: str,
        *,
        username: str,
        page_size: int,
        page_token: str,
        kind: str = ALL_SESSIONS,
    ) -> v1.ListSessionsResponse:
        """Live sessions of the token's user, or of ``username`` (manage_users), newest first.

        ``page_size`` 0 is :data:`SESSIONS_PAGE_SIZE`; the servicer has
        checked it is at most :data:`MAX_SESSIONS_PAGE_SIZE`, and that
        ``kind`` is one of :data:`~bugless_auth.session_kinds.SESSION_KINDS`. A
        page token belongs to the user and the kind whose sessions it lists.

        Raises:
            Unauthenticated: the token is invalid, expired or ended.
            PermissionDenied: ``username`` is another user and the caller
                lacks manage_users (checked before the name is looked up).
            NotFound: nobody has that username.
            InvalidArgument: a page token not of this listing.
        """
        caller = await self._caller(token)
        current = self.tokens.verify(token).token_id
        user = caller.user or v1.User()
        user_id = user.user_id
        if username and username_key(username) != username_key(user.username):
            if not self.policy.decide(caller.groups, MANAGE_USERS).allowed:
                raise PermissionDenied(
                    "listing another user's sessions needs the manage_users permission"
                )
            found = await self.store.users_by_usernames([username])
            if not found:
                raise NotFound(f"username: no bugless user is called {username!r}")
            user_id = found[0].user_id
        pages = self.tokens.page_tokens
        # "all" keeps the fingerprint of the listing before kinds: its tokens still work.
        listing = (
            ("ListSessions", user_id) if kind == ALL_SESSIONS else ("ListSessions", user_id, kind)
        )
        fingerprint = pages.fingerprint(*listing)
        after = None
        if page_token:
            after = _page_position(pages.decode(page_token, fingerprint))
        size = page_size or SESSIONS_PAGE_SIZE
        await self.mapped_sessions.end_unmapped()  # none listed that a mapping dropped
        rows = await self.sessions.list_live(user_id, after=after, limit=size + 1, kind=kind)
        next_token = ""
        if len(rows) > size:
            rows = rows[:size]
            last = rows[-1]
            next_token = pages.encode(
                [last["created_at"].isoformat(), last["session_id"]], fingerprint
            )
        kinds = self._session_kinds()
        return v1.ListSessionsResponse(
            sessions=[session_message(row, kinds, current) for row in rows],
            next_page_token=next_token,
            total_count=await self.sessions.count_live(user_id, kind=kind),
            last_used_granularity_seconds=LAST_USED_GRANULARITY_SECONDS,
            certificate_last_used_granularity_seconds=CERTIFICATE_LAST_USED_GRANULARITY_SECONDS,
        )

    async def end_session(self, token: str, session_id: str) -> v1.EndSessionResponse:
        """End one live session: the caller's own, or anyone's with manage_users.

        Any of the caller's sessions, the token's own included (that is a
        sign-out). Without manage_users, another user's session is answered
        as one that does not exist: ids of others cannot be probed.

        Raises:
            Unauthenticated: the token is invalid, expired or ended.
            NotFound: no live session (of the caller's, without manage_users)
                has that id.
        """
        caller = await self._caller(token)
        current = self.tokens.verify(token).token_id
        admin = self.policy.decide(caller.groups, MANAGE_USERS).allowed
        owner = "" if admin else (caller.user or v1.User()).user_id
        row = await self.sessions.end(session_id, owner=owner, reason=f"ended by {who(caller)}")
        if row is None:
            whose = "no live session" if admin else "none of your live sessions"
            raise NotFound(
                f"session_id: {whose} has the id {session_id!r} (ended or expired already?)"
            )
        if row["session_id"] == current:
            self._valid_tokens.discard(token)
        return v1.EndSessionResponse(session=session_message(row, self._session_kinds(), current))
