"""``bugless auth user update``: a local user's groups, display name and email, changed later.

Before it, groups were given once by ``bugless auth user add`` and nothing
could change them: an administrator putting an existing person into the
group a component's access list names needed SQL. The command runs as a
subprocess against the schema of a real Authenticator, which must see the
change through the users' change feed (no restart, no cache left stale).
"""

from __future__ import annotations

import asyncio
import json

import asyncpg
from auth_support import AuthServer, UserCommands, unique
from grpc_errors import expect_status
from grpclib.const import Status

from bugless_core.auth_backend import ExternalIdentity
from bugless_proto import v1


async def identity_once(auth: AuthServer, token: str, groups: list[str]) -> v1.Identity:
    """The token's identity once the server says it has ``groups`` (its feed: about 1 s)."""
    async with asyncio.timeout(30):
        while True:
            identity = await auth.stub.validate_token(v1.ValidateTokenRequest(token=token))
            if identity.groups == groups:
                return identity
            await asyncio.sleep(0.1)


async def test_a_group_given_later_reaches_the_users_open_session(
    auth: AuthServer, user_commands: UserCommands
) -> None:
    name = unique("ann")
    await auth.add_user(name, groups=["web"])
    token = (await auth.sign_in(name)).token
    assert (await auth.stub.validate_token(v1.ValidateTokenRequest(token=token))).groups == ["web"]

    out, _ = await user_commands(
        "update",
        name,
        "--add-group",
        "platform",
        "--display-name",
        "Ann Example",
        "--email",
        "ann@example.com",
        "--json",
    )

    shown = json.loads(out)
    assert shown["groups"] == ["web", "platform"]
    assert (shown["display_name"], shown["email"]) == ("Ann Example", "ann@example.com")
    assert "sessions_ended" not in shown  # nothing was lost: her session stays
    identity = await identity_once(auth, token, ["web", "platform"])
    assert identity.user is not None
    assert identity.user.display_name == "Ann Example"
    assert identity.user.email == "ann@example.com"
    [looked_up] = (await auth.stub.lookup_users(v1.LookupUsersRequest(usernames=[name]))).users
    assert looked_up.display_name == "Ann Example"


async def test_losing_a_group_ends_the_users_sessions(
    auth: AuthServer, user_commands: UserCommands
) -> None:
    name = unique("bob")
    await auth.add_user(name, groups=["platform", "web"])
    token = (await auth.sign_in(name)).token

    out, _ = await user_commands("update", name, "--remove-group", "platform")

    assert "groups: web\n" in out
    assert f"{name} lost platform: 1 session(s) ended" in out
    await expect_status(
        auth.stub.validate_token(v1.ValidateTokenRequest(token=token)), Status.UNAUTHENTICATED
    )
    again = await auth.sign_in(name)
    assert again.identity is not None
    assert again.identity.groups == ["web"]

    out, _ = await user_commands("update", name, "--groups", "", "--json")
    assert json.loads(out)["groups"] == []
    assert json.loads(out)["sessions_ended"] == 1


async def test_a_refused_update_says_why_and_changes_nothing(
    auth: AuthServer, user_commands: UserCommands
) -> None:
    name = unique("cat")
    await auth.add_user(name, groups=["platform"], display_name="Cat")
    mapped = unique("deploy-bot")
    await auth.store.resolve(
        ExternalIdentity(subject=f"tls:{mapped}", username=mapped, groups=("bots",), bot=True),
        "tls",
    )
    nobody = unique("nobody")
    placeholder, left = unique("imported"), unique("left-bot")
    conn = await asyncpg.connect(
        auth.settings.database_url, server_settings={"search_path": auth.settings.schema}
    )
    try:
        for user, is_placeholder in ((placeholder, True), (left, False)):
            await conn.execute(
                "INSERT INTO users (user_id, username, username_key, display_name, placeholder)"
                " VALUES ($1, $2, $2, $2, $3)",
                f"u_{user}",
                user,
                is_placeholder,
            )
        await conn.execute(
            "INSERT INTO external_subjects (subject, user_id, authenticator) "
            "VALUES ($1, $2, 'import')",
            f"import:trac:{placeholder}",
            f"u_{placeholder}",
        )
        users_before = await conn.fetch("SELECT * FROM users ORDER BY user_id")
        feed_before = await conn.fetchval("SELECT count(*) FROM user_changes")

        refusals = {
            (name, "--remove-group", "platfrom"): (
                f"Error: --remove-group: {name} is not in 'platfrom' (their groups: platform); "
                "nothing was changed"
            ),
            (name, "--groups", "a", "--add-group", "b"): (
                "Error: --groups: give the whole list, or groups to add and remove, not both"
            ),
            (name,): "Error: nothing to change: give a display name, an email, groups, "
            "or groups to add or remove",
            (name, "--add-group", " "): "Error: --add-group: '' is not a group name",
            (nobody, "--add-group", "x"): f"Error: USERNAME: no bugless user is called {nobody!r}",
        }
        for args, said in refusals.items():
            # A value refused is bad usage (2); a user that is not there, not found (3).
            _, err = await user_commands("update", *args, status=3 if args[0] == nobody else 2)
            assert err.strip() == said, args
        _, err = await user_commands("update", mapped, "--add-group", "deployers", status=1)
        assert f"Error: USERNAME: {mapped!r} is a user of the tls authenticator" in err
        assert "change them there" in err
        assert "Traceback" not in err
        # Neither is "a user of the import authenticator", nor one to "change there".
        _, err = await user_commands("update", placeholder, "--add-group", "x", status=1)
        assert err.strip() == (
            f"Error: USERNAME: {placeholder!r} is an imported person's placeholder, not a "
            "local user: it cannot sign in, and its name and email are what the imported "
            "tracker said; merge it into the person's bugless account (MergePlaceholder) "
            "rather than changing it"
        )
        _, err = await user_commands("update", left, "--add-group", "x", status=1)
        assert f"Error: USERNAME: {left!r} is a user no tls mapping entry maps any more" in err
        assert "an entry with that username takes them back" in err

        assert await conn.fetch("SELECT * FROM users ORDER BY user_id") == users_before
        assert await conn.fetchval("SELECT count(*) FROM user_changes") == feed_before
    finally:
        await conn.close()
