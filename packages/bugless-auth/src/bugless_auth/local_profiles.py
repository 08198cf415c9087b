"""Changing a local user's display name, email and groups (``bugless auth user update``).

The local store is the directory of its users, so what a directory would
change (someone joins a team, gets married, moves to another mail domain) is
changed here, by an administrator: before this, groups were given once by
``bugless auth user add`` and nothing could change them, so putting an
existing person into the group a component's access list names took SQL.

A user of another authenticator is refused: LDAP, OIDC and the tls mapping
file state their user's names and groups at each sign-in (and re-sync), so
a change written here would be undone by the next one, silently.

The change is one transaction through :class:`~bugless_auth.user_writes.UserWrites`,
so it reaches every cache of users through the change feed (a user's open
sessions validate with the new groups within ``--user-changes-seconds``).
Losing a group ends the user's sessions in that same transaction, as
:mod:`bugless_auth.group_loss` does for a directory's: an identity
assertion already issued carries its groups for its lifetime, and a group
may be named by a component's access list as well as by the policy, which
this command (run from an administrator's shell, not the serving
Authenticator) cannot see; so every group lost counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bugless_auth import _queries as sql
from bugless_auth.name_keys import derived_names
from bugless_auth.sessions import end_user_sessions, log_ended
from bugless_auth.store import IdentityStore, UserRecord
from bugless_auth.user_writes import UserWrites
from bugless_core.errors import FailedPrecondition, InvalidArgument, NotFound
from bugless_core.usernames import username_key


def check_group_names(groups: Sequence[str], field: str = "groups") -> None:
    """Refuse a group name that is empty or has surrounding whitespace.

    Raises:
        InvalidArgument: naming ``field`` and the name.
    """
    for group in groups:
        if not group or group != group.strip():
            raise InvalidArgument(f"{field}: {group!r} is not a group name")


@dataclass(frozen=True)
class ProfileChange:
    """What to change; None (or empty) leaves it as it is.

    Attributes:
        display_name: The new display name ("" means the username, as at creation).
        email: The new mail address ("" removes it).
        groups: The whole new group list (not with ``add_groups``/``remove_groups``).
        add_groups: Groups to add (one the user has already is no change).
        remove_groups: Groups to remove; one the user is not in is refused,
            so that a misspelt name does not leave them in the group unnoticed.
    """

    display_name: str | None = None
    email: str | None = None
    groups: Sequence[str] | None = None
    add_groups: Sequence[str] = ()
    remove_groups: Sequence[str] = ()

    def check(self) -> None:
        """Refuse a change that says nothing, or both a whole list and additions/removals.

        Raises:
            InvalidArgument: naming the field at fault.
        """
        if self.groups is not None and (self.add_groups or self.remove_groups):
            raise InvalidArgument(
                "groups: give the whole list, or groups to add and remove, not both"
            )
        if (
            self.display_name is None
            and self.email is None
            and self.groups is None
            and not self.add_groups
            and not self.remove_groups
        ):
            raise InvalidArgument(
                "nothing to change: give a display name, an email, groups, "
                "or groups to add or remove"
            )
        check_group_names(self.groups or (), "groups")
        check_group_names(self.add_groups, "add_groups")
        check_group_names(self.remove_groups, "remove_groups")

    def groups_after(self, username: str, before: Sequence[str]) -> list[str]:
        """The groups the user has after the change, in the order they were given.

        Raises:
            InvalidArgument: a group to remove that the user is not in.
        """
        if self.groups is not None:
            return list(dict.fromkeys(self.groups))
        absent = [g for g in self.remove_groups if g not in before]
        if absent:
            raise InvalidArgument(
                f"remove_groups: {username} is not in {', '.join(map(repr, absent))} "
                f"(their groups: {', '.join(before) or 'none'}); nothing was changed"
            )
        kept = [g for g in before if g not in self.remove_groups]
        return list(dict.fromkeys([*kept, *self.add_groups]))


@dataclass(frozen=True)
class ProfileUpdated:
    """A committed change: the user now, the groups they lost, and the sessions that ended."""

    record: UserRecord
    lost: tuple[str, ...] = ()
    sessions: int = 0


def session_reason(lost: Sequence[str]) -> str:
    """Why a group loss ended the user's sessions (kept with the sessions, and logged)."""
    return f"removed from {', '.join(lost)} with bugless auth user update"


async def update_local_user(
    store: IdentityStore, username: str, change: ProfileChange
) -> ProfileUpdated:
    """Change a local user's display name, email or groups; end their sessions if a group went.

    Raises:
        InvalidArgument: the change says nothing, is contradictory, or names
            a group the user is not in to remove; nothing was changed.
        NotFound: nobody has that username.
        FailedPrecondition: the user is not a local one (their directory
            states these), or is an import's placeholder; nothing was changed.
    """
    change.check()

    async def work(writes: UserWrites) -> ProfileUpdated:
        conn = writes.conn
        found = await conn.fetchrow(sql.LOCAL_CREDENTIALS, username_key(username))
        if found is None:
            raise await _not_local(conn, username)
        user_id = found["user_id"]
        before = tuple(await conn.fetchval(sql.GROUPS_FOR_UPDATE, user_id))
        current = UserRecord.from_row(found)
        groups = change.groups_after(current.username, before)
        display_name = current.display_name if change.display_name is None else change.display_name
        display_name = display_name or current.username
        email = current.email if change.email is None else change.email
        row = await writes.fetchrow(
            sql.REFRESH_USER, user_id, current.username, display_name, email, groups, current.bot,
            *derived_names(current.username, display_name, email),
        )  # fmt: skip
        record = current if row is None else UserRecord.from_row(row)
        lost = tuple(g for g in before if g not in groups)
        if not lost:
            return ProfileUpdated(record)
        await writes.log()  # the feed head before the sessions (group_loss's lock order)
        ended = await end_user_sessions(conn, user_id, session_reason(lost))
        return ProfileUpdated(record, lost, ended)

    done = await store.write_users(work)
    if done.lost:
        log_ended(done.record.user_id, done.sessions, session_reason(done.lost))
    return done


async def _not_local(conn: Any, username: str) -> NotFound | FailedPrecondition:
    """Why ``username`` has no local profile to change: nobody, or whose directory."""
    row = await conn.fetchrow(sql.AUTHENTICATORS_OF_USERNAME, username_key(username))
    if row is None:
        return NotFound(f"username: no bugless user is called {username!r}")
    authenticators = [a for a in row["authenticators"] if a]
    if "import" in authenticators:  # its subject is the import's (import:<source>:<login>)
        return FailedPrecondition(
            f"username: {username!r} is an imported person's placeholder, not a local user: "
            "it cannot sign in, and its name and email are what the imported tracker said; "
            "merge it into the person's bugless account (MergePlaceholder) rather than "
            "changing it"
        )
    if not authenticators:  # its tls mapping entries all moved to other users
        return FailedPrecondition(
            f"username: {username!r} is a user no tls mapping entry maps any more, not a "
            "local user: the entries that mapped them stated their display name, email and "
            "groups, and an entry with that username takes them back and states them again"
        )
    where = ", ".join(authenticators)
    return FailedPrecondition(
        f"username: {username!r} is a user of the {where} authenticator, not a local one: "
        "it states their display name, email and groups at each sign-in (the directory, "
        "or the tls mapping file for a certificate), so change them there"
    )
