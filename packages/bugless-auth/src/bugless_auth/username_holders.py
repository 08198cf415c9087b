"""Who holds a username a sign-in brings, and what the sign-in may do about it.

:meth:`IdentityStore.resolve <bugless_auth.store.IdentityStore.resolve>` asks
here, inside its transaction, before it writes a user. Two rules, by what
the backend's username means (``ExternalIdentity.username_names_user``):

* A directory (LDAP, OIDC) names a *subject*, and the username is what it
  calls that subject today. When it gives a username to another subject,
  the holder from the same directory was renamed or removed there: the
  stale row gives the name up (:func:`free_username`).
* A tls mapping entry names a *user*. Two entries with one username (a
  ``sha256:`` entry added for a bot's new certificate beside its CN entry)
  are one user: the second subject joins the holder (:func:`named_user`)
  rather than taking its name, so the bot keeps its id and with it its
  issues, grants and group memberships.

In both, a username held by a user of another backend is refused and logged,
never taken over: merging would let one backend take another's account.

A user can be left with no subject at all: a tls entry whose username was
changed to another mapped user's moves its subject there, and when it was
the user's only entry, nothing maps the user any more; it keeps its name, id,
issues and groups. Every other way of making a user gives it a subject
(``local:`` at ``user add``, ``import:`` for an import's placeholder, the
backend's at a first sign-in), and no statement removes one (only that move
takes one away), so a user with none was left by a mapping whose usernames
name users. Such a mapping may name it again: a tls entry with its username
claims it back (:func:`named_user`), as an entry joins any user its username
names, rather than being refused as "held by another user" with no command
that could fix it, provided the entry is of the user's kind: a bot entry
does not take a person's account (nor a person's entry a bot's), since no
other entry is left to check it against. A directory (LDAP, OIDC) does not take its name: that
would hand an account with its history to whoever the directory calls that;
it is refused, the message saying how the mapping takes the user back.

An entry given a username nobody holds renames its user, unless another
entry of the mapping still names the user's username (:func:`entry_user`):
then its certificate is refused (reason ``MAPPING_ENTRIES_DISAGREE``), naming
the entries that still name the user, until every entry names the new name
(the next sign-in then renames the user). Renaming would be undone by the
other entry's next sign-in, and redone by this one's, at every sign-in; a
new user for the entry would, once the other entry was given the new name
in a later edit, take that one too (it joins the holder of its name) and
leave the user with no entry, its history and groups on an account nothing
maps, under a name no command renames.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from bugless_auth import _queries as sql
from bugless_auth.user_writes import UserWrites
from bugless_core.auth_backend import ExternalIdentity
from bugless_core.errors import FailedPrecondition
from bugless_core.usernames import username_key

_log = logging.getLogger("bugless.auth")

#: Reason of a sign-in refused since its entry's new username is not its user's
#: other entries' (:func:`entry_user`).
ENTRIES_DISAGREE = "MAPPING_ENTRIES_DISAGREE"


def namespace(subject: str) -> str:
    """The backend part of a subject (``tls`` of ``tls:deploy-bot``)."""
    return subject.split(":", 1)[0]


@dataclass
class EntryUser:
    """Whose a tls mapping entry's subject is, as :func:`entry_user` decided it.

    Attributes:
        user_id: The user the subject is now (None: a new user, to be minted).
        released: Users the subject left, whose cached records callers forget.
        linked: How the subject came to ``user_id`` ("joins", "moves from
            …"), for the log; empty when it stayed.
    """

    user_id: str | None
    released: list[str] = field(default_factory=list)
    linked: str = ""


async def entry_user(
    writes: UserWrites,
    identity: ExternalIdentity,
    authenticator: str,
    user_id: str | None,
    mapped: Mapping[str, str] | None,
) -> EntryUser:
    """Whose ``identity.subject`` is, for an entry whose username names the user.

    ``user_id`` is the user the subject is recorded as (None: first sight),
    ``mapped`` every subject the mapping maps now with its username
    (:meth:`~bugless_core.auth_backend.CertificateAuthenticator.mapped_subjects`;
    None: not known, and the entry renames its user as before). The subject
    joins (or moves to) the user its username names; when nobody holds that
    name, its user is renamed, unless another subject of the user is still
    mapped to the user's username: then the sign-in is refused, logged (see
    the module).

    Raises:
        FailedPrecondition: as :func:`named_user`; or, reason
            :data:`ENTRIES_DISAGREE`, another entry still names the user.
    """
    conn = writes.conn
    named = await named_user(writes, identity)
    if named is not None and named != user_id:
        if user_id is None:
            await conn.execute(sql.INSERT_SUBJECT, identity.subject, named, authenticator)
            return EntryUser(named, linked="joins")
        await conn.execute(sql.MOVE_SUBJECT, identity.subject, named)
        return EntryUser(named, [user_id], f"moves from {user_id} to")
    if named is not None or user_id is None or mapped is None:
        return EntryUser(user_id)
    row = await conn.fetchrow(sql.NAME_AND_OTHER_SUBJECTS, user_id, identity.subject)
    keeping = sorted(s for s in row[1] if s in mapped and username_key(mapped[s]) == row[0])
    if not keeping:  # no other entry names it: the user is renamed
        return EntryUser(user_id)
    still = ", ".join(keeping)
    _log.warning(
        "%s is mapped to username %r, which nobody holds, but its user %s is still named by "
        "%s: refused until every entry naming it has the new username (one edit renames it)",
        identity.subject,
        identity.username,
        user_id,
        still,
        extra={"subject": identity.subject, "username": identity.username, "user_id": user_id},
    )
    msg = (
        f"is mapped to username {identity.username!r}, but its user {row[2]!r} is still "
        f"named by {still}: give every entry naming {row[2]!r} the new username to rename "
        "the user (its id and history kept), or this entry back its old one"
    )
    raise FailedPrecondition(msg, reason=ENTRIES_DISAGREE)


async def named_user(writes: UserWrites, identity: ExternalIdentity) -> str | None:
    """The user ``identity.username`` names among its backend's users, None when nobody holds it.

    For a backend whose username names the user
    (``identity.username_names_user``): the subject is (or becomes) another
    subject of that user. The holder row is locked, as for a rename.

    A user with no subject left (every entry that mapped it moved to other
    users) is claimed back: the subject joins it, and it is logged.

    Raises:
        FailedPrecondition: a user of another backend (or an import's
            placeholder) holds the username, or a user no entry maps any
            more is claimed by an entry of the other kind (bot or person);
            logged with both parties.
    """
    holder = await writes.conn.fetchrow(sql.USERNAME_HOLDER, username_key(identity.username))
    if holder is None:
        return None
    holder_id: str = holder[0]
    subjects = list(holder[1])
    if not subjects and not holder[2]:  # left by its entries: this mapping's to name again
        if bool(holder[3]) != identity.bot:
            raise _kind_differs(identity, holder_id, was_bot=bool(holder[3]))
        _log.info(
            "%s claims back user %s (username %s), whom no mapping entry mapped any more",
            identity.subject,
            holder_id,
            identity.username,
            extra={"subject": identity.subject, "user_id": holder_id},
        )
        return holder_id
    if subjects and all(namespace(s) == namespace(identity.subject) for s in subjects):
        return holder_id
    raise _refused(identity, holder_id, subjects)


async def free_username(writes: UserWrites, identity: ExternalIdentity, user_id: str) -> list[str]:
    """Make ``identity.username`` available to ``user_id``; the ids it was taken from.

    A directory is authoritative for its own namespace: when it now gives a
    username to a different subject, the previous holder from the same
    directory must have been renamed or removed there, so the stale row is
    renamed to ``<name>~<id>`` until that user logs in again.

    Raises:
        FailedPrecondition: a user of another backend (or one no subject
            maps any more, which only a tls entry may claim back) holds the
            username; logged with both parties.
    """
    holder = await writes.conn.fetchrow(sql.USERNAME_HOLDER, username_key(identity.username))
    if holder is None or holder[0] == user_id:
        return []
    holder_id, subjects = holder[0], list(holder[1])
    if subjects and all(namespace(s) == namespace(identity.subject) for s in subjects):
        released = f"{identity.username}~{holder_id}"
        await writes.fetchrow(
            sql.RELEASE_USERNAME,
            holder_id,
            released,
            username_key(released),
            released.casefold(),
        )
        return [holder_id]
    raise _refused(identity, holder_id, subjects)


def _kind_differs(
    identity: ExternalIdentity, holder_id: str, *, was_bot: bool
) -> FailedPrecondition:
    """The refusal of a claim back by an entry of the other kind (bot or person), logged.

    The user's entries all left it, and the one claiming it says bot where
    the user was a person (or the other way round): most likely a new bot
    given a person's old name. Taking the account would hand a person's
    issues and groups to that bot's certificate (or a bot's grants to a
    person), and flip its bot flag; the entry's ``bot`` must say what the
    user was.
    """
    was, says = ("a bot", "a person") if was_bot else ("a person", "a bot")
    flag = "true" if was_bot else "false"
    _log.warning(
        "%s names username %r, of user %s whom no mapping entry maps any more: refused, the "
        "entry says %s and the user was %s; give the entry bot = %s to take the user back, "
        "else another username",
        identity.subject,
        identity.username,
        holder_id,
        says,
        was,
        flag,
        extra={"subject": identity.subject, "username": identity.username, "holder": holder_id},
    )
    return FailedPrecondition(
        f"username {identity.username!r} already belongs to another bugless user (from a "
        f"certificate mapping, which maps it no more), {was}, and this entry is {says}; "
        f"an entry with bot = {flag} takes that user back, else give this one another name"
    )


def _refused(identity: ExternalIdentity, holder_id: str, subjects: list[str]) -> FailedPrecondition:
    """The refusal of a username another backend's user holds, logged for the operator."""
    if subjects:
        holder = ", ".join(sorted({namespace(s) for s in subjects}))
        fix = (
            "an administrator must rename one of the two (the directory's name, the mapping "
            "entry, or the account)"
        )
    else:  # its tls entries moved to other users: only the mapping may name it again
        holder = "a certificate mapping, which maps it no more"
        fix = (
            f"a tls mapping entry with username {identity.username!r} takes that user back "
            "(with its issues and groups); else an administrator must give this one another name"
        )
    _log.warning(
        "%s names username %r (from %s), which user %s (from %s) holds: refused, the name "
        "stays with its holder; %s",
        identity.subject,
        identity.username,
        identity.username_from or "its backend",
        holder_id,
        holder,
        fix,
        extra={"subject": identity.subject, "username": identity.username, "holder": holder_id},
    )
    return FailedPrecondition(
        f"username {identity.username!r} already belongs to another bugless user "
        f"(from {holder}); {fix}"
    )
