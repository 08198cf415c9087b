"""Renaming a local user (``bugless auth user rename OLD NEW``), keeping their id.

The Model knows people only by their opaque user id, so a rename changes one
row of ``users`` and nothing else: the person's issues, comments, history,
hotlists, access-list entries and groups stay theirs, and every page and
reply shows the new name as soon as the caches learn of it. The row is
written through :class:`~bugless_auth.user_writes.UserWrites`, so the
change is logged in the users' change feed: every Authenticator replica's
cache and every frontend's (the web's, the API's identities) forget the old
name within about a poll (``--user-changes-seconds``), no restart. Open
sessions go on: tokens, identity assertions and people-CA certificates name
the user id, never the username, so each validates from then on as the new
name; nothing needs to sign in again. The password stays the user's and is
typed with the new name.

Only the local store may rename: it is its users' directory. A user of
another authenticator is refused, naming where the name comes from, since a
rename written here would be written back at their next sign-in or re-sync:
LDAP and OIDC state the username at each sign-in (rename them in the
directory; their next sign-in renames them here, keeping their id), and a
tls mapping entry names its user by username (change the username of every
entry naming them: the next sign-in of a certificate renames the user when
nobody holds the new name). An import's placeholder is refused too (merge
it into an account instead), and so is a user no entry maps any more (only a
tls entry with its username may claim it back).

The new name follows the rules of a new local user
(:func:`bugless_auth.user_admin.check_username`), and one any user holds
(compared as look-ups compare, by :func:`~bugless_core.usernames.username_key`)
is refused as ``USERNAME_TAKEN``, and one that looks like it, as
``USERNAME_CONFUSABLE`` (:mod:`bugless_auth.confusable_names`). A change of
case only ("ann" to "Ann") is a rename. A display name that was the old
username (the default a user is created with) becomes the new one; any
other is kept.

OLD names the local user whose username it is, compared as look-ups compare
(``Ölaf`` for ``ölaf``), except that one spelt exactly OLD that the store has
not keyed yet (migration 0011: a replica of an earlier release let it in
beside a keyed one of the same key) is that user: the key-fill refusal
(:mod:`bugless_auth.name_keys`) names both, and each can be renamed by the
spelling it lists. The command says which account it renamed, by username
and id, since OLD may name one spelt otherwise.

The old name is free once the rename commits, as a deleted account's would
be: nothing else names a user by username that a rename could carry along.
Texts are history and keep ``@old`` as written (mentions are kept by name,
:mod:`bugless_core.mentions`), so they stop linking to and being found for
the renamed user, and a saved search names users as typed; both then mean
whoever is given the old name next. The README and the command's help say
so, for the administrator choosing whether to reuse it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import asyncpg

from bugless_auth import _queries as sql
from bugless_auth.confusable_names import refuse_confusable
from bugless_auth.name_keys import derived_names
from bugless_auth.store import IdentityStore, UserRecord
from bugless_auth.user_admin import check_username
from bugless_auth.user_writes import UserWrites
from bugless_core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from bugless_core.usernames import username_key

_log = logging.getLogger("bugless.auth")

#: Where each authenticator's users get their usernames, and how to rename one there.
_RENAMED_WHERE = {
    "ldap": "the LDAP directory is the source of truth for their username (each sign-in "
    "and re-sync writes it back): rename them in the directory, and their next sign-in "
    "renames them here, keeping their id",
    "oidc": "the OIDC provider states their username at each sign-in: rename them there, "
    "and their next sign-in renames them here, keeping their id",
    "tls": "a tls mapping entry names its user by username: change the username of every "
    "entry naming them in the mapping file; a certificate's next sign-in then renames the "
    "user (keeping their id) when nobody holds the new name",
}


def taken(new: str) -> AlreadyExists:
    """The refusal of a new username some user holds (reason ``USERNAME_TAKEN``)."""
    return AlreadyExists(
        f"new_username: {new!r} is taken by another bugless user; choose another username "
        "(nothing was changed)",
        reason="USERNAME_TAKEN",
    )


@dataclass(frozen=True)
class Renamed:
    """A rename done: the user as renamed, and the username it had.

    Attributes:
        record: The user now, under the new name.
        was: Their username before, as spelt (OLD may have named it otherwise).
    """

    record: UserRecord
    was: str


async def rename_local_user(store: IdentityStore, old: str, new: str) -> Renamed:
    """Rename the local user ``old`` to ``new``, keeping their id; the user now and before.

    One transaction, logged in the users' change feed (see the module).

    Raises:
        InvalidArgument: ``new`` cannot be a new local username, or is
            ``old`` exactly (nothing to change).
        NotFound: nobody has the username ``old``.
        AlreadyExists: another user holds ``new`` (reason ``USERNAME_TAKEN``).
        FailedPrecondition: ``old`` is not a local user (their directory or
            the tls mapping names them), or is an import's placeholder.
    """
    check_username(new, "new_username")
    if new == old:
        raise InvalidArgument(f"new_username: {new!r} is the user's name already; nothing to do")

    async def work(writes: UserWrites) -> asyncpg.Record:
        conn = writes.conn
        found = await conn.fetchrow(sql.LOCAL_CREDENTIALS, username_key(old))
        if found is None or found["username"] != old:  # an unkeyed one spelt so, if any
            found = await conn.fetchrow(sql.UNKEYED_LOCAL_CREDENTIALS, old) or found
        if found is None:
            raise await _not_renamable(conn, old)
        was.append(found["username"])
        current = UserRecord.from_row(found)
        holder = await conn.fetchval(sql.USER_ID_OF_USERNAME_KEY, username_key(new))
        if holder is not None and holder != current.user_id:
            raise taken(new)
        await refuse_confusable(
            conn,
            new,
            "new_username",
            lock=store.dialect.username_check_lock,
            user_id=current.user_id,
        )
        display_name = new if current.display_name == current.username else current.display_name
        row = await writes.fetchrow(
            sql.REFRESH_USER, current.user_id, new, display_name, current.email,
            list(current.groups), current.bot,
            *derived_names(new, display_name, current.email),
        )  # fmt: skip
        if row is None:  # the same name in every field: cannot be, new != old
            raise InvalidArgument(f"new_username: {new!r} is the user's name already")
        return row

    was: list[str] = []  # the last attempt's (write_users may run work again)
    try:
        row = await store.write_users(work)
    except asyncpg.UniqueViolationError as exc:  # taken meanwhile, or by 0001's lower() index
        raise taken(new) from exc
    record = UserRecord.from_row(row)
    _log.info(
        "user %s renamed from %s to %s with bugless auth user rename",
        record.user_id,
        was[-1],
        record.username,
        extra={"user_id": record.user_id, "old_username": was[-1], "username": record.username},
    )
    return Renamed(record, was[-1])


async def _not_renamable(conn: Any, username: str) -> NotFound | FailedPrecondition:
    """Why ``username`` is not a local user to rename: nobody, or whose name it is."""
    row = await conn.fetchrow(sql.AUTHENTICATORS_OF_USERNAME, username_key(username))
    if row is None:
        return NotFound(f"username: no bugless user is called {username!r}")
    authenticators = [a for a in row["authenticators"] if a]
    if "import" in authenticators:
        return FailedPrecondition(
            f"username: {username!r} is an imported person's placeholder, not a local user; "
            "merge it into their account (MergePlaceholder) rather than renaming it"
        )
    if not authenticators:
        return FailedPrecondition(
            f"username: {username!r} is a user no tls mapping entry maps any more; only an "
            "entry with that username takes them back, so they are not renamed here"
        )
    reasons = "; ".join(
        f"{name}: {_RENAMED_WHERE.get(name, 'that authenticator states their username')}"
        for name in authenticators
    )
    return FailedPrecondition(
        f"username: {username!r} is a user of the {', '.join(authenticators)} authenticator, "
        f"not a local one, so bugless auth user rename does not rename them ({reasons})"
    )
