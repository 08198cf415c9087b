"""``bugless auth user rename OLD NEW``: a local user's new name, their id kept.

The command runs as a subprocess against the schema of a real Authenticator,
which serves on: its open sessions and a frontend's user cache (the one the
web and the API keep, following the users' change feed) must show the new
name without a restart, and the Model, which knows only the id, needs
nothing. Refusals exit with the documented statuses and change nothing.
"""

from __future__ import annotations

import asyncio
import json

import asyncpg
from auth_support import AuthServer, UserCommands, unique
from grpc_errors import expect_status
from grpclib.const import Status

from bugless_core.auth_backend import ExternalIdentity
from bugless_core.user_cache import UserCache, get_user_changes, get_users, lookup_users
from bugless_proto import v1


async def until_named(auth: AuthServer, token: str, username: str) -> v1.Identity:
    """The token's identity once the server names it ``username`` (its feed: about 1 s)."""
    async with asyncio.timeout(30):
        while True:
            identity = await auth.stub.validate_token(v1.ValidateTokenRequest(token=token))
            if identity.user is not None and identity.user.username == username:
                return identity
            await asyncio.sleep(0.1)


async def _until_cached_as(cache: UserCache, auth: AuthServer, user_id: str, name: str) -> None:
    """Return once a frontend's cache answers ``user_id`` with username ``name``."""
    async with asyncio.timeout(30):
        while True:
            if (await cache.by_id([user_id], get_users(auth.stub)))[user_id].username == name:
                return
            await asyncio.sleep(0.1)


async def test_a_renamed_user_keeps_their_id_session_and_password_under_the_new_name(
    auth: AuthServer, user_commands: UserCommands
) -> None:
    """The open session validates as the new name, same id and groups; a frontend's
    cache that read the old name answers the new one within about a poll; the
    password signs in with the new name and not the old; the display name that was
    the old username (the default) follows it."""
    old, new = unique("ann"), unique("anna")
    created = await auth.add_user(old, groups=["platform"])
    token = (await auth.sign_in(old)).token
    frontend = UserCache(ttl_seconds=600, changes=get_user_changes(auth.stub), poll_seconds=0.2)
    try:
        by_id = await frontend.by_id([created.user_id], get_users(auth.stub))
        assert by_id[created.user_id].username == old
        assert old in await frontend.by_name([old], lookup_users(auth.stub))

        out, _ = await user_commands("rename", old, new, "--json")

        shown = json.loads(out)
        assert (shown["user_id"], shown["username"], shown["display_name"]) == (
            created.user_id,
            new,
            new,
        )
        identity = await until_named(auth, token, new)
        assert identity.user is not None
        assert identity.user.user_id == created.user_id
        assert identity.groups == ["platform"]
        await _until_cached_as(frontend, auth, created.user_id, new)
        assert await frontend.by_name([old], lookup_users(auth.stub)) == {}
        named = await frontend.by_name([new], lookup_users(auth.stub))
        assert named[new].user_id == created.user_id
    finally:
        frontend.close()
    again = await auth.sign_in(new)
    assert again.identity is not None
    assert again.identity.user is not None
    assert again.identity.user.user_id == created.user_id
    await expect_status(auth.sign_in(old), Status.UNAUTHENTICATED)


async def test_a_display_name_of_its_own_is_kept_and_a_change_of_case_is_a_rename(
    auth: AuthServer, user_commands: UserCommands
) -> None:
    old = unique("bo")
    created = await auth.add_user(old, display_name="Bo Diddley")
    out, _ = await user_commands("rename", old, old.upper())
    assert f"username: {old.upper()}" in out.splitlines()
    assert "display_name: Bo Diddley" in out.splitlines()
    (found,) = await auth.store.users_by_ids([created.user_id])
    assert (found.username, found.display_name) == (old.upper(), "Bo Diddley")


async def _row(auth: AuthServer, username: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await auth.store.run(
        lambda conn: conn.fetchrow(
            "SELECT user_id, username, display_name FROM users WHERE username = $1", username
        ),
        transaction=False,
    )
    return row


async def test_a_refused_rename_says_why_exits_by_the_table_and_changes_nothing(
    auth: AuthServer, user_commands: UserCommands
) -> None:
    """A taken name (any user's, in any case) exits 4 USERNAME_TAKEN; a name the local
    store would not create, or the same name, 2; an unknown user 3; a user whose name a
    directory or the tls mapping states, or an import's placeholder, 1, saying where to
    rename them. Nothing is written: the users' change feed gains no entry."""
    cat, dan = unique("cat"), unique("dan")
    await auth.add_user(cat)
    await auth.add_user(dan)
    mapped, directory = unique("deploy-bot"), unique("erin")
    await auth.store.resolve(
        ExternalIdentity(subject=f"tls:{mapped}", username=mapped, bot=True), "tls"
    )
    await auth.store.resolve(
        ExternalIdentity(subject=f"ldap:{unique('uuid')}", username=directory), "ldap"
    )
    placeholder = unique("imported")
    await auth.store.run(
        lambda conn: conn.execute(
            "INSERT INTO users (user_id, username, username_key, display_name, placeholder) "
            "VALUES ($1, $2, $2, $2, true)",
            f"u_{placeholder}",
            placeholder,
        )
    )
    await auth.store.run(
        lambda conn: conn.execute(
            "INSERT INTO external_subjects (subject, user_id, authenticator) "
            "VALUES ($1, $2, 'import')",
            f"import:trac:{placeholder}",
            f"u_{placeholder}",
        )
    )
    before = await auth.store.run(
        lambda conn: conn.fetch("SELECT user_id, username, display_name FROM users ORDER BY 1"),
        transaction=False,
    )
    feed = await auth.store.run(
        lambda conn: conn.fetchval("SELECT coalesce(max(version), 0) FROM user_changes"),
        transaction=False,
    )

    _, err = await user_commands("rename", cat, dan.upper(), status=4)
    assert f"NEW: {dan.upper()!r} is taken by another bugless user" in err
    _, err = await user_commands("rename", cat, mapped, status=4)
    assert "is taken" in err
    _, err = await user_commands("rename", cat, "пaul", status=2)  # Cyrillic and Latin
    assert "NEW: 'пaul' cannot be a username" in err
    _, err = await user_commands("rename", cat, "cat.", status=2)
    assert "NEW: 'cat.' is not a valid username" in err
    _, err = await user_commands("rename", cat, cat, status=2)
    assert "is the user's name already" in err
    _, err = await user_commands("rename", unique("nobody"), unique("somebody"), status=3)
    assert "OLD: no bugless user is called" in err
    _, err = await user_commands("rename", directory, unique("erin2"), status=1)
    assert "is a user of the ldap authenticator, not a local one" in err
    assert "rename them in the directory" in err
    _, err = await user_commands("rename", mapped, unique("bot2"), status=1)
    assert "change the username of every entry naming them in the mapping file" in err
    _, err = await user_commands("rename", placeholder, unique("someone"), status=1)
    assert "placeholder" in err
    for said in (err,):
        assert "Traceback" not in said

    after = await auth.store.run(
        lambda conn: conn.fetch("SELECT user_id, username, display_name FROM users ORDER BY 1"),
        transaction=False,
    )
    assert after == before
    assert feed == await auth.store.run(
        lambda conn: conn.fetchval("SELECT coalesce(max(version), 0) FROM user_changes"),
        transaction=False,
    )
    assert await _row(auth, cat) is not None
