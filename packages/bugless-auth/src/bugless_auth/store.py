"""The identity store: opaque user ids, the subjects they map from, local passwords.

It is the Authenticator's own PostgreSQL schema (asyncpg), and the only place a
user id is minted. A backend says *who* someone is in its own namespace (an
:class:`~bugless_core.auth_backend.ExternalIdentity` subject); :meth:`resolve`
turns that into the id the rest of bugless knows, creating it on first sight
and refreshing the username, display name, email and groups on every login,
so a rename in the directory changes nothing but those columns.
"""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

from bugless_auth import _queries as sql
from bugless_auth.confusable_names import refuse_confusable
from bugless_auth.external_names import check_external_username
from bugless_auth.name_keys import derived_names
from bugless_auth.store_database import StoreDatabase
from bugless_auth.user_writes import UserWrites
from bugless_auth.username_holders import EntryUser, entry_user, free_username
from bugless_core.auth_backend import ExternalIdentity
from bugless_core.errors import AlreadyExists, NotFound
from bugless_core.usernames import username_key

T = TypeVar("T")
_log = logging.getLogger("bugless.auth")
_COMPONENT = "bugless-auth"
#: Tries of a first sign-in that loses the insert race to another replica
#: (without the subject lock, on the CockroachDB dialect).
_FIRST_SIGHT_RACES = 3


def mint_user_id() -> str:
    """A new opaque user id: ``u_`` and 16 base32 characters (80 random bits).

    Random rather than sequential so that ids reveal neither how many users
    exist nor who signed up first, and can be minted on any replica.
    """
    return "u_" + base64.b32encode(secrets.token_bytes(10)).decode("ascii").lower()


@dataclass(frozen=True)
class UserRecord:
    """A user as the store knows them now (the latest login's directory data)."""

    user_id: str
    username: str
    display_name: str
    email: str
    groups: tuple[str, ...]
    disabled: bool
    bot: bool
    #: An imported tracker's person with no account here (cannot sign in).
    placeholder: bool = False
    #: For a merged placeholder: the real account whose data this record carries.
    alias_of: str = ""
    #: For a real account: the ids of the placeholders merged into it. None
    #: when the query that read the record did not ask (only look-ups by
    #: username do); a cached record with None does not answer those.
    merged_ids: tuple[str, ...] | None = None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> UserRecord:
        """Build from a row selected with ``USER_COLUMNS``."""
        return cls(
            user_id=row["user_id"],
            username=row["username"],
            display_name=row["display_name"],
            email=row["email"],
            groups=tuple(row["groups"]),
            disabled=row["disabled"],
            bot=row["bot"],
            placeholder=bool(row.get("placeholder", False)),
            alias_of=row.get("alias_of", "") or "",
            merged_ids=tuple(merged) if (merged := row.get("merged_ids")) is not None else None,
        )


class IdentityStore(StoreDatabase):
    """The Authenticator's users, behind async methods that speak in records.

    Who a subject is (:meth:`resolve`), look-ups, the directory re-sync's
    reads and the local backend's passwords; the schema, connections and
    transactions they go through are :class:`StoreDatabase`'s.
    """

    # ---- identities ----

    async def resolve(
        self,
        identity: ExternalIdentity,
        authenticator: str,
        *,
        sign_in: bool = True,
        then: Callable[[UserWrites, tuple[str, ...], UserRecord], Awaitable[None]] | None = None,
        mapped: Mapping[str, str] | None = None,
    ) -> tuple[UserRecord, tuple[str, ...]]:
        """The user ``identity.subject`` maps to, minted on first sight, refreshed always.

        Also returns the ids of users whose username was taken from them
        (:func:`bugless_auth.username_holders.free_username`), or who lost the
        subject to the user its username names, so callers can forget what
        they cached.

        For a backend whose username names the user
        (``identity.username_names_user``: the tls mapping) the subject is
        the holder's: a new subject joins the user who holds its username,
        and a known one whose username is now another such user's moves to
        that user (:mod:`bugless_auth.username_holders`). With ``mapped``
        (the mapping's subjects and usernames), a known one given a name
        nobody holds renames its user only if no other entry still names the
        user's name, and is otherwise refused.

        Username, display name, email, groups and the bot flag are overwritten
        with what the backend reports; ``disabled`` is bugless's own and kept.

        ``then(writes, groups_before, record)`` runs in the same transaction
        once the record is written, with the groups the row had (read under
        its lock; none for a new user), so what it writes commits with the
        refresh or not at all (:class:`bugless_auth.group_loss.GroupLoss`
        ends the sessions of a user who lost a group). Like any work of
        :meth:`run`, it may run more than once.

        Raises:
            FailedPrecondition: the username is held by a user from another
                authenticator (two directories disagree; an administrator must
                rename one), which is refused (and logged) rather than merged,
                since merging would let one directory take over another's account.
            Unauthenticated: the username cannot be a bugless username
                (:func:`bugless_auth.external_names.check_external_username`,
                reason ``USERNAME_UNUSABLE``); nothing was written.
        """
        check_external_username(identity, authenticator)

        async def work(writes: UserWrites) -> tuple[asyncpg.Record, list[str], bool, str]:
            conn = writes.conn
            if self.dialect.subject_lock is not None:
                await conn.execute(self.dialect.subject_lock, identity.subject)
            released: list[str] = []
            before: tuple[str, ...] = ()
            user_id = await conn.fetchval(sql.USER_OF_SUBJECT, identity.subject)
            entry = EntryUser(user_id)  # how the subject came to the user its username names
            if identity.username_names_user:  # the username's holder is who the subject is
                entry = await entry_user(writes, identity, authenticator, user_id, mapped)
                user_id, released = entry.user_id, entry.released
            created = user_id is None
            if user_id is None:
                user_id = mint_user_id()
                released += await free_username(writes, identity, user_id)
                await writes.fetchrow(
                    sql.INSERT_USER,
                    user_id,
                    identity.username,
                    identity.display_name,
                    identity.email,
                    list(identity.groups),
                    identity.bot,
                    *derived_names(identity.username, identity.display_name, identity.email),
                )
                await conn.execute(sql.INSERT_SUBJECT, identity.subject, user_id, authenticator)
            else:
                released += await free_username(writes, identity, user_id)
                if sign_in:  # the directory re-sync refreshes without signing in
                    await conn.execute(sql.TOUCH_SUBJECT, identity.subject)
                if then is not None:  # locked as the refresh below would lock it
                    before = tuple(await conn.fetchval(sql.GROUPS_FOR_UPDATE, user_id))
            row = await writes.fetchrow(
                sql.REFRESH_USER,
                user_id,
                identity.username,
                identity.display_name,
                identity.email,
                list(identity.groups),
                identity.bot,
                *derived_names(identity.username, identity.display_name, identity.email),
            )
            if row is None:  # the directory says what the store has
                row = await conn.fetchrow(sql.USER_BY_ID, user_id)
            if then is not None:
                await then(writes, before, UserRecord.from_row(row))
            return row, released, created, entry.linked

        for attempt in range(_FIRST_SIGHT_RACES):
            try:
                row, released, created, linked = await self.write_users(work)
                break
            except asyncpg.UniqueViolationError:
                # Another replica minted this subject (or took this username)
                # between our read and our insert; the next try sees its row.
                if attempt == _FIRST_SIGHT_RACES - 1:
                    raise
        record = UserRecord.from_row(row)
        if linked:
            _log.info(
                "%s %s user %s, whose username %s its entry names",
                identity.subject,
                linked,
                record.user_id,
                identity.username,
                extra={"user_id": record.user_id, "authenticator": authenticator},
            )
        for holder_id in [] if linked else released:  # linked: the name stayed with its holder
            _log.info(
                "username %s moved from %s to %s", identity.username, holder_id, record.user_id
            )
        if created:
            _log.info(
                "new user %s for %s",
                record.user_id,
                identity.subject,
                extra={"user_id": record.user_id, "authenticator": authenticator},
            )
        return record, tuple(released)

    # ---- look-ups ----

    async def users_by_ids(self, user_ids: Sequence[str]) -> list[UserRecord]:
        """The users among ``user_ids`` that exist, in no particular order."""
        ids = list(user_ids)
        rows = await self.run(lambda conn: conn.fetch(sql.USERS_BY_IDS, ids), transaction=False)
        return [UserRecord.from_row(r) for r in rows]

    async def users_by_usernames(self, usernames: Sequence[str]) -> list[UserRecord]:
        """The users whose username matches one of ``usernames`` (by ``username_key``)."""
        names = [username_key(u) for u in usernames]
        rows = await self.run(
            lambda conn: conn.fetch(sql.USERS_BY_USERNAMES, names), transaction=False
        )
        return [UserRecord.from_row(r) for r in rows]

    async def suggest(self, prefix: str, limit: int) -> list[UserRecord]:
        """Enabled users whose username, display name or email starts with ``prefix``."""
        escaped = prefix.casefold().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = await self.run(
            lambda conn: conn.fetch(sql.SUGGEST, escaped + "%", limit), transaction=False
        )
        return [UserRecord.from_row(r) for r in rows]

    async def count_group_members(
        self, groups: Sequence[str], *, outside: Sequence[str] = ()
    ) -> dict[str, tuple[int, int]]:
        """Enabled, real users per group name (groups nobody is in map to 0s).

        Each group's pair: all of them, and those with no subject of the
        authenticators ``outside`` names (the people a directory's own
        count of the group does not hold).
        """
        rows = await self.run(
            lambda conn: conn.fetch(sql.COUNT_GROUP_MEMBERS, list(groups), list(outside)),
            transaction=False,
        )
        return {r["group_name"]: (r["members"], r["outside"]) for r in rows}

    async def group_member_ids(self, groups: Sequence[str], limit: int) -> dict[str, list[str]]:
        """Up to ``limit`` enabled, real members' ids per group, in id order (absent: none)."""
        rows = await self.run(
            lambda conn: conn.fetch(sql.GROUP_MEMBER_IDS, list(groups), limit), transaction=False
        )
        found: dict[str, list[str]] = {}
        for row in rows:
            found.setdefault(row["group_name"], []).append(row["user_id"])
        return found

    # ---- directory re-sync ----

    async def subjects_of(
        self, authenticator: str, *, after: str = "", limit: int = 500
    ) -> list[tuple[str, str]]:
        """``(subject, user_id)`` of ``authenticator``'s users, in subject order after ``after``."""
        rows = await self.run(
            lambda conn: conn.fetch(sql.SUBJECTS_OF, authenticator, after, limit),
            transaction=False,
        )
        return [(r["subject"], r["user_id"]) for r in rows]

    async def directory_enable(self, user_id: str) -> UserRecord | None:
        """Re-enable a user the re-sync disabled; None if it did not (or they are enabled)."""
        row = await self.write_users(lambda writes: writes.fetchrow(sql.DIRECTORY_ENABLE, user_id))
        return None if row is None else UserRecord.from_row(row)

    # ---- the local backend's passwords ----

    async def local_credentials(self, username: str) -> tuple[UserRecord, str] | None:
        """The local user called ``username`` and their password hash, if any."""
        row = await self.run(
            lambda conn: conn.fetchrow(sql.LOCAL_CREDENTIALS, username_key(username)),
            transaction=False,
        )
        if row is None:
            return None
        return UserRecord.from_row(row), row["password_hash"]

    async def create_local_user(
        self,
        *,
        username: str,
        display_name: str,
        email: str,
        groups: Sequence[str],
        password_hash: str,
        bot: bool = False,
    ) -> UserRecord:
        """Add a user to the local store with a fresh id.

        Raises:
            AlreadyExists: the username is taken (by any authenticator's user),
                or looks like one that is (reason ``USERNAME_CONFUSABLE``,
                :mod:`bugless_auth.confusable_names`).
        """
        user_id = mint_user_id()

        async def work(writes: UserWrites) -> asyncpg.Record:
            conn = writes.conn
            await refuse_confusable(
                conn, username, "username", lock=self.dialect.username_check_lock
            )
            await writes.fetchrow(
                sql.INSERT_USER, user_id, username, display_name, email, list(groups), bot,
                *derived_names(username, display_name, email),
            )  # fmt: skip
            await conn.execute(sql.INSERT_CREDENTIALS, user_id, password_hash)
            await conn.execute(sql.INSERT_SUBJECT, f"local:{user_id}", user_id, "local")
            row: asyncpg.Record = await conn.fetchrow(sql.USERS_BY_IDS, [user_id])
            return row

        try:
            row = await self.write_users(work)
        except asyncpg.UniqueViolationError as exc:
            raise AlreadyExists(
                f"username: {username!r} is taken; choose another username"
            ) from exc
        return UserRecord.from_row(row)

    async def set_local_password(self, username: str, password_hash: str) -> UserRecord:
        """Replace a local user's password hash.

        Raises:
            NotFound: there is no local user called ``username``.
        """

        async def work(conn: Any) -> asyncpg.Record:
            found: asyncpg.Record | None = await conn.fetchrow(
                sql.LOCAL_CREDENTIALS, username_key(username)
            )
            if found is None:
                raise NotFound(
                    f"username: no local user is called {username!r} (users of a directory "
                    "change their password there)"
                )
            await conn.execute(sql.UPDATE_CREDENTIALS, found["user_id"], password_hash)
            return found

        return UserRecord.from_row(await self.run(work))
