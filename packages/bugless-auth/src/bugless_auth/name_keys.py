"""What the store keeps derived from a user's names, and the fills that catch rows up.

Every write of a user's names also writes, computed in Python (never by SQL,
whose ``lower()`` is ASCII-only under the C locale): the username's key, which
look-ups by username compare (migration 0011), and the three names folded,
which suggestions compare (migration 0010); :func:`derived_names` gives them.
During a rollout a replica of the previous release writes usernames without
a key (new users) or leaves a stale one (renames), and names without folds;
the next migrate (every replica that starts with ``--migrate``) catches them
up, through the users' change feed as every write of ``users`` is.

Two accounts whose usernames have one key (the old rule, SQL's ASCII-only
``lower()``, let "Ölaf" and "ölaf" both in) cannot both be keyed: the fill then
names both and writes nothing, so an administrator can rename one and migrate
again: a local one with ``bugless auth user rename``, which takes a keyed user
by its key and an unkeyed one by its exact spelling, as the refusal lists
them (a later migrate finds a name an old replica let in during a rollout
beside a keyed one); a directory's in its directory, a certificate
mapping's by its entries, then sign it in.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import asyncpg

from bugless_auth import _queries as sql
from bugless_auth.user_writes import UserWrites
from bugless_core.errors import FailedPrecondition
from bugless_core.migrations import quote_schema
from bugless_core.usernames import username_key


def folds(username: str, display_name: str, email: str) -> tuple[str, str, str]:
    """A user's names as suggestions compare them: folded by ``str.casefold`` (migration 0010).

    The rule the Model compares names by; SQL's ``lower()`` folds ASCII only
    under the C locale ("Émile" was not suggested for "émi", nor for "Émi").
    """
    return username.casefold(), display_name.casefold(), email.casefold()


def derived_names(username: str, display_name: str, email: str) -> tuple[str, str, str, str]:
    """What a write of a user's names stores with them: the username's key, then :func:`folds`.

    The key (:func:`~bugless_core.usernames.username_key`, migration 0011)
    is what every look-up by username compares; the folds, what suggestions do.
    """
    return (username_key(username), *folds(username, display_name, email))


#: Users folded per statement by :func:`fold_users`.
FOLD_BATCH = 5000


async def fold_users(conn: Any, schema: str) -> int:
    """Fold the names of the users migration 0010 left unfolded; how many were.

    Run right after migrating (on ``schema``), a batch per transaction; a
    user renamed meanwhile keeps the folds its rename wrote. Logged in the
    users' change feed as every write of ``users`` is (caches re-read them
    once; their answers are unchanged).
    """
    await conn.execute(f"SET search_path TO {quote_schema(schema)}")
    done = 0
    while rows := await conn.fetch(sql.UNFOLDED_USERS, FOLD_BATCH):
        names = [(r["username"], r["display_name"], r["email"]) for r in rows]
        folded = [folds(*n) for n in names]
        async with conn.transaction():
            writes = UserWrites(conn)
            await writes.fetch(
                sql.SET_FOLDS,
                [r["user_id"] for r in rows],
                *([n[i] for n in names] for i in range(3)),
                *([f[i] for f in folded] for i in range(3)),
            )
            await writes.log()
        done += len(rows)
    return done


#: Users read, and keyed, per statement.
KEY_BATCH = 5000


async def key_usernames(conn: Any, schema: str) -> int:
    """Key the users whose username key is missing or stale; how many were.

    Every user to key is read first and every clash checked before anything
    is written. A user renamed meanwhile is left as its rename wrote it.

    Raises:
        FailedPrecondition: two users' usernames have one key (both named,
            with their ids); nothing was written.
    """
    await conn.execute(f"SET search_path TO {quote_schema(schema)}")
    to_key: list[tuple[str, str, str | None, str]] = []  # id, username, stale key, key
    after = ""
    while rows := await conn.fetch(sql.UNKEYED_USERS, after, KEY_BATCH):
        after = rows[-1]["user_id"]
        for row in rows:
            key = username_key(row["username"])
            if key != row["username_key"]:
                to_key.append((row["user_id"], row["username"], row["username_key"], key))
    if not to_key:
        return 0
    await _refuse_clashes(conn, to_key)
    try:
        for start in range(0, len(to_key), KEY_BATCH):
            batch = to_key[start : start + KEY_BATCH]
            stale = [entry for entry in batch if entry[2] is not None]
            async with conn.transaction():
                writes = UserWrites(conn)
                if stale:
                    await writes.fetch(
                        sql.CLEAR_USERNAME_KEYS, *([entry[i] for entry in stale] for i in range(3))
                    )
                await writes.fetch(
                    sql.SET_USERNAME_KEYS, *([entry[i] for entry in batch] for i in (0, 1, 3))
                )
                await writes.log()
    except asyncpg.UniqueViolationError as exc:
        raise FailedPrecondition(
            "a username was given to another user while usernames were being keyed; "
            f"run `bugless auth migrate` again ({exc})"
        ) from exc
    return len(to_key)


async def _refuse_clashes(conn: Any, to_key: list[tuple[str, str, str | None, str]]) -> None:
    """Raise if two of ``to_key``, or one of them and a keyed user, would share a key."""
    changing = {entry[0] for entry in to_key}
    holders: dict[str, list[tuple[str, str, bool]]] = defaultdict(list)  # id, username, keyed
    for user_id, username, _, key in to_key:
        holders[key].append((user_id, username, False))
    keys = list(holders)
    for start in range(0, len(keys), KEY_BATCH):
        for row in await conn.fetch(sql.USERNAME_KEY_HOLDERS, keys[start : start + KEY_BATCH]):
            if row["user_id"] not in changing:  # its key stays
                holders[row["username_key"]].append((row["user_id"], row["username"], True))
    clashes = sorted(sorted(users) for users in holders.values() if len(users) > 1)
    if not clashes:
        return
    listed = "; ".join(
        " and ".join(
            f"{username!r} ({user_id}{', keyed' if keyed else ''})"
            for user_id, username, keyed in users
        )
        for users in clashes[:10]
    )
    more = f" (and {len(clashes) - 10} more)" if len(clashes) > 10 else ""
    # The command takes a local user by its key, or an unkeyed one by its
    # exact spelling, so each of a clash can be named: as listed here.
    raise FailedPrecondition(
        f"usernames that differ only in case belong to different users: {listed}{more}. "
        "Usernames are one by Unicode lower-casing (migration 0011); rename one of each "
        "(a local user with `bugless auth user rename OLD NEW`, OLD spelt as listed; a "
        "directory's user in its directory, then sign it in; a certificate mapping's user "
        "by giving its entries another username, then sign it in) and run "
        "`bugless auth migrate` again. Nothing was written."
    )
