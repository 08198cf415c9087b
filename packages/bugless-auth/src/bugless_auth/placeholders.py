"""The people of an imported tracker: matched to accounts, or given placeholders.

An import (``bugless import``) knows people the way the source tracker did:
a login, an e-mail, a display name. Each is matched to a real bugless
account by e-mail first (the one thing two systems are likely to agree on),
then by username; whoever matches nobody gets a placeholder account, keyed
by ``import:<source>:<key>`` so that a re-run (a resumed import) finds the
same one. A placeholder has no credentials and no subject a sign-in flow
maps, so it can never sign in; an admin may later merge it into the real
account, which only records the mapping (:data:`_queries.MERGE_PLACEHOLDER`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bugless_auth import _queries as sql
from bugless_auth.name_keys import derived_names
from bugless_auth.store import IdentityStore, UserRecord, mint_user_id
from bugless_auth.user_writes import UserWrites
from bugless_core import usernames
from bugless_core.errors import FailedPrecondition, InvalidArgument, NotFound
from bugless_core.usernames import username_key
from bugless_proto import v1

_SOURCE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
#: How a match was made, as ImportUserMatch.matched_by says it.
BY_EMAIL, BY_USERNAME, BY_PLACEHOLDER = "email", "username", "placeholder"


@dataclass(frozen=True)
class Match:
    """The account one source person maps to (``None``: unmatched, dry run)."""

    user: UserRecord | None
    matched_by: str


def subject_of(source: str, person: v1.SourcePerson) -> str:
    """The placeholder subject of one source person."""
    return f"import:{source}:{person.key}"


def check_people(source: str, people: Sequence[v1.SourcePerson]) -> None:
    """A plain source name and people with a key each (listed once)."""
    if not _SOURCE.match(source):
        raise InvalidArgument(
            f"source: {source!r} is not a source name (lower-case letters, digits, '_', '-')"
        )
    seen: set[str] = set()
    for i, person in enumerate(people):
        if not person.key or len(person.key) > 256:
            raise InvalidArgument(f"people[{i}].key: required, at most 256 characters")
        if person.key in seen:
            raise InvalidArgument(f"people[{i}].key: {person.key!r} is listed twice")
        seen.add(person.key)


def placeholder_username(source: str, person: v1.SourcePerson, attempt: int) -> str:
    """``<name>@<source>`` (then ``.2``, ``.3`` ...): readable, and apart from real names."""
    return usernames.placeholder_username(
        source, username=person.username, email=person.email, key=person.key, attempt=attempt
    )


async def match_people(
    store: IdentityStore,
    source: str,
    people: Sequence[v1.SourcePerson],
    *,
    create_placeholders: bool,
) -> list[Match]:
    """Match every person (request order); create missing placeholders if asked."""
    # Addresses and usernames compare by one rule, decided here (username_key);
    # the database narrows addresses by their stored casefold, a superset.
    emails = sorted({p.email.casefold() for p in people if p.email})
    usernames = sorted({username_key(p.username) for p in people if p.username})
    subjects = [subject_of(source, p) for p in people]

    async def work(writes: UserWrites) -> list[Match]:
        conn = writes.conn
        by_email: dict[str, UserRecord] = {}
        for row in await conn.fetch(sql.REAL_USERS_BY_EMAIL, emails):
            by_email.setdefault(username_key(row["email"]), UserRecord.from_row(row))
        by_username = {
            username_key(row["username"]): UserRecord.from_row(row)
            for row in await conn.fetch(sql.REAL_USERS_BY_USERNAME, usernames)
        }
        by_subject = {
            row["subject"]: UserRecord.from_row(row)
            for row in await conn.fetch(sql.PLACEHOLDERS_OF_SUBJECTS, subjects)
        }
        matches: list[Match] = []
        for person, subject in zip(people, subjects, strict=True):
            if person.email and username_key(person.email) in by_email:
                matches.append(Match(by_email[username_key(person.email)], BY_EMAIL))
            elif person.username and username_key(person.username) in by_username:
                matches.append(Match(by_username[username_key(person.username)], BY_USERNAME))
            elif subject in by_subject:
                matches.append(Match(by_subject[subject], BY_PLACEHOLDER))
            elif create_placeholders:
                record = await _create_placeholder(
                    writes, store.dialect.subject_lock, source, person, subject
                )
                by_subject[subject] = record
                matches.append(Match(record, BY_PLACEHOLDER))
            else:
                matches.append(Match(None, ""))
        return matches

    # Re-run whole on a conflict (CockroachDB dialect: no subject lock, 40001s).
    return await store.write_users(work)


async def _create_placeholder(
    writes: UserWrites, subject_lock: str | None, source: str, person: v1.SourcePerson, subject: str
) -> UserRecord:
    db = writes.conn
    if subject_lock is not None:  # the PostgreSQL dialect; SERIALIZABLE needs none
        await db.execute(subject_lock, subject)
    existing = await db.fetchrow(sql.PLACEHOLDERS_OF_SUBJECTS, [subject])
    if existing is not None:
        return UserRecord.from_row(existing)
    for attempt in range(1, 1000):
        username = placeholder_username(source, person, attempt)
        if not await db.fetchval(sql.USERNAME_TAKEN, username_key(username)):
            break
    user_id = mint_user_id()
    display = person.display_name or person.username or person.key
    await writes.fetchrow(
        sql.INSERT_PLACEHOLDER, user_id, username, display, person.email,
        *derived_names(username, display, person.email),
    )  # fmt: skip
    await db.execute(sql.INSERT_SUBJECT, subject, user_id, "import")
    return UserRecord(
        user_id=user_id,
        username=username,
        display_name=display,
        email=person.email,
        groups=(),
        disabled=False,
        bot=False,
        placeholder=True,
    )


async def merge_placeholder(store: IdentityStore, placeholder: str, into: str) -> UserRecord:
    """Map the placeholder ``placeholder`` to the real account ``into`` (usernames).

    A placeholder already merged is moved to ``into`` (a mistaken merge
    corrected); the account it leaves is logged as changed with it.

    Raises:
        NotFound: either username matches nobody.
        FailedPrecondition: ``placeholder`` is a real account, or ``into`` is
            a placeholder or a bot.
    """

    async def work(writes: UserWrites) -> Any:
        conn = writes.conn
        source = await conn.fetchrow(sql.USER_BY_USERNAME, username_key(placeholder))
        target = await conn.fetchrow(sql.USER_BY_USERNAME, username_key(into))
        if source is None:
            raise NotFound(f"placeholder: no bugless user is called {placeholder!r}")
        if target is None:
            raise NotFound(f"into: no bugless user is called {into!r}")
        if not source["placeholder"]:
            raise FailedPrecondition(
                f"placeholder: {placeholder!r} is a real account; only placeholders are merged"
            )
        if target["placeholder"]:
            raise FailedPrecondition(f"into: {into!r} is a placeholder; merge into a real account")
        if target["bot"]:
            # A person's imported past is theirs: on a bot's account it would
            # count as the bot's in searches and pages, and no one could answer.
            raise FailedPrecondition(f"into: {into!r} is a bot; merge into a person's account")
        before = await conn.fetchval(sql.MERGED_INTO, source["user_id"])
        await writes.fetchrow(sql.MERGE_PLACEHOLDER, source["user_id"], target["user_id"])
        writes.changed(target["user_id"])  # its merged_user_ids gain the placeholder
        if before and before != target["user_id"]:
            # Merged again (a mistaken INTO corrected): the account it left
            # loses it from its merged_user_ids, which caches hold by its id.
            writes.changed(before)
        return await conn.fetchrow(sql.USERS_BY_IDS, [source["user_id"]])

    row = await store.write_users(work)
    return UserRecord.from_row(row)
