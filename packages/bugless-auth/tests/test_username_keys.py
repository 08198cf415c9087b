"""Usernames compare by one rule, Python's: ``bugless_core.usernames.username_key``.

A directory (LDAP, OIDC, a certificate) may give a username a non-ASCII
capital, which SQL's ``lower()`` leaves as is under the C locale (the test
clusters' and ``bugless dev``'s): these sign real people in through slapd and
find them by name however the name is cased.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from typing import TYPE_CHECKING

import asyncpg
import pytest
from auth_support import set_disabled

from bugless_auth import _queries as sql
from bugless_auth.name_keys import key_usernames
from bugless_core.auth_backend import ExternalIdentity
from bugless_core.errors import FailedPrecondition
from bugless_core.migrations import quote_schema
from bugless_core.usernames import username_key
from bugless_proto import v1
from bugless_testing.slapd import PEOPLE_DN, READER_DN, READER_PASSWORD, Slapd, ssha

if TYPE_CHECKING:
    from auth_support import AuthServer, StartAuth, UserCommands


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def add_person(server: Slapd, uid: str, password: str) -> None:
    """A directory entry whose uid may be non-ASCII (LDIF carries it base64: ``attr::``)."""
    ldif = (
        f"dn:: {_b64(f'uid={uid},{PEOPLE_DN}')}\nobjectClass: inetOrgPerson\n"
        f"uid:: {_b64(uid)}\ncn:: {_b64(uid)}\nsn:: {_b64(uid)}\n"
        f"mail: p{secrets.token_hex(3)}@bugless.test\nuserPassword: {ssha(password)}\n"
    )
    await asyncio.to_thread(server.ldapadd, ldif)


async def start_with_ldap(start_auth_server: StartAuth, server: Slapd) -> AuthServer:
    options = {
        "urls": server.url,
        "base_dn": PEOPLE_DN,
        "bind_dn": READER_DN,
        "bind_password": READER_PASSWORD,
        "connect_timeout": "2",
        "operation_timeout": "2",
    }
    return await start_auth_server(
        authenticators=("ldap",), authenticator_options={"ldap": options}
    )


async def lookup(auth: AuthServer, *names: str) -> v1.UsersResponse:
    return await auth.stub.lookup_users(v1.LookupUsersRequest(usernames=list(names)))


async def test_directory_usernames_with_non_ascii_capitals_are_found_in_any_case(
    start_auth_server: StartAuth, slapd_server: Slapd
) -> None:
    auth = await start_with_ldap(start_auth_server, slapd_server)
    # Digits only: a hex tag's Latin letters would make "Ζωή-4d2409" mix scripts.
    tag = str(secrets.randbelow(10**8))
    olaf, zoe = f"Ölaf-{tag}", f"Ζωή-{tag}"
    for uid in (olaf, zoe):
        await add_person(slapd_server, uid, "pw-of-" + uid)
    signed_in = {}
    for uid in (olaf, zoe):
        result = await auth.sign_in(uid, "pw-of-" + uid)
        assert result.identity is not None
        assert result.identity.user is not None
        assert result.identity.user.username == uid
        signed_in[uid] = result.identity.user.user_id

    for spelling in (olaf, olaf.lower(), olaf.upper(), f"ölaf-{tag}"):
        answer = await lookup(auth, spelling)  # a miss, then from the cache
        again = await lookup(auth, spelling)
        for response in (answer, again):
            assert [u.user_id for u in response.users] == [signed_in[olaf]], spelling
            assert response.missing == []
    for spelling in (zoe, zoe.lower(), zoe.upper()):
        answer = await lookup(auth, spelling)
        assert [u.user_id for u in answer.users] == [signed_in[zoe]], spelling
    # Unicode lower-casing, not case folding: "ß" is not "ss".
    assert (await lookup(auth, f"Olaf-{tag}")).missing == [f"Olaf-{tag}"]
    # The admin calls that name a person by username use the same rule.
    assert (await set_disabled(auth.store, f"ÖLAF-{tag}", True)).user_id == signed_in[olaf]


async def test_usernames_that_differ_only_in_case_are_one_account(auth: AuthServer) -> None:
    tag = secrets.token_hex(3)
    first, _ = await auth.store.resolve(
        ExternalIdentity(subject=f"oidc:a#{tag}", username=f"Ölaf-{tag}"), "oidc"
    )
    # Another directory naming someone "ölaf" is refused, not given a second account.
    with pytest.raises(FailedPrecondition, match="already belongs"):
        await auth.store.resolve(
            ExternalIdentity(subject=f"ldap:{tag}", username=f"ölaf-{tag}"), "ldap"
        )
    # Strauß and Strauss are two people.
    a, _ = await auth.store.resolve(
        ExternalIdentity(subject=f"oidc:a#s1{tag}", username=f"Strauß-{tag}"), "oidc"
    )
    b, _ = await auth.store.resolve(
        ExternalIdentity(subject=f"oidc:a#s2{tag}", username=f"Strauss-{tag}"), "oidc"
    )
    assert len({first.user_id, a.user_id, b.user_id}) == 3


async def _raw(auth: AuthServer) -> asyncpg.Connection:
    conn: asyncpg.Connection = await asyncpg.connect(auth.settings.database_url)
    await conn.execute(f"SET search_path TO {quote_schema(auth.store.schema)}")
    return conn


async def test_migrate_keys_usernames_written_before_and_reports_a_clash(
    auth: AuthServer,
) -> None:
    tag = secrets.token_hex(3)
    olaf, _ = await auth.store.resolve(
        ExternalIdentity(subject=f"oidc:a#{tag}", username=f"Ölaf-{tag}"), "oidc"
    )
    conn = await _raw(auth)
    try:
        # As the release before wrote them: no key; the old index allowed
        # "Ölaf" and "ölaf" as two accounts under the C locale.
        await conn.execute("UPDATE users SET username_key = NULL WHERE user_id = $1", olaf.user_id)
        await conn.execute(
            "INSERT INTO users (user_id, username) VALUES ($1, $2)", f"u_twin{tag}", f"ölaf-{tag}"
        )
        with pytest.raises(FailedPrecondition) as refused:
            await key_usernames(conn, auth.store.schema)
        message = str(refused.value)
        for named in (f"'Ölaf-{tag}'", f"'ölaf-{tag}'", olaf.user_id, f"u_twin{tag}"):
            assert named in message
        unkeyed = await conn.fetchval("SELECT count(*) FROM users WHERE username_key IS NULL")
        assert unkeyed >= 2  # nothing written

        # An administrator renames one; migrating again keys both, through the feed.
        await conn.execute(
            "UPDATE users SET username = $2 WHERE user_id = $1", f"u_twin{tag}", f"ölaf2-{tag}"
        )
        head = await conn.fetchval("SELECT version FROM user_changes_state WHERE name = 'head'")
        assert await key_usernames(conn, auth.store.schema) >= 2
        rows = await conn.fetch(
            "SELECT user_id, username_key FROM users WHERE user_id = ANY($1::text[])",
            [olaf.user_id, f"u_twin{tag}"],
        )
        keys = {r["user_id"]: r["username_key"] for r in rows}
        assert keys == {olaf.user_id: f"ölaf-{tag}", f"u_twin{tag}": f"ölaf2-{tag}"}
        logged = await conn.fetchval(
            "SELECT array_agg(user_id) FROM user_changes WHERE version > $1", head
        )
        assert set(logged) >= {olaf.user_id, f"u_twin{tag}"}
        # A key an old replica left stale by renaming is recomputed too.
        await conn.execute(
            "UPDATE users SET username = $2 WHERE user_id = $1", olaf.user_id, f"Ölafur-{tag}"
        )
        assert await key_usernames(conn, auth.store.schema) == 1
        found = await lookup(auth, f"ÖLAFUR-{tag}")
        assert [u.user_id for u in found.users] == [olaf.user_id]
    finally:
        await conn.close()


async def test_a_clash_with_a_keyed_local_user_is_resolved_by_renaming_it(
    auth: AuthServer, user_commands: UserCommands
) -> None:
    tag = secrets.token_hex(3)
    olaf = await auth.add_user(f"Ölaf-{tag}")  # keyed, as this release writes users
    conn = await _raw(auth)
    try:
        # A replica of the release before, still running during the rollout,
        # let in a name of the same key, unkeyed.
        await conn.execute(
            "INSERT INTO users (user_id, username) VALUES ($1, $2)", f"u_late{tag}", f"ölaf-{tag}"
        )
        with pytest.raises(FailedPrecondition) as refused:
            await key_usernames(conn, auth.store.schema)
        message = str(refused.value)
        assert f"'Ölaf-{tag}' ({olaf.user_id}, keyed)" in message
        assert f"'ölaf-{tag}' (u_late{tag})" in message
        assert (
            "a local user with `bugless auth user rename OLD NEW`, OLD spelt as listed" in message
        )

        # What the message says works: the command renames the keyed account,
        # and the next migrate keys the other.
        await user_commands("rename", f"Ölaf-{tag}", f"Ólafur-{tag}")
        assert await key_usernames(conn, auth.store.schema) == 1
        for name, user_id in ((f"ÓLAFUR-{tag}", olaf.user_id), (f"ÖLAF-{tag}", f"u_late{tag}")):
            found = await lookup(auth, name)
            assert [u.user_id for u in found.users] == [user_id], name
    finally:
        await conn.close()


async def test_rename_says_which_account_it_renamed_and_takes_an_unkeyed_one_by_its_spelling(
    auth: AuthServer, user_commands: UserCommands
) -> None:
    """OLD compared as look-ups compare names the keyed "Ölaf-x" however it is spelt, and
    the command now says which account it renamed (username and id); the unkeyed "ölaf-x"
    an earlier release let in beside it is renamed by its exact spelling, as the key-fill
    refusal lists it, so no clash needs the users table. Before, the command printed the
    user only, and every spelling renamed the keyed account."""
    tag = secrets.token_hex(3)
    olaf = await auth.add_user(f"Ölaf-{tag}")
    late = f"u_late{tag}"
    conn = await _raw(auth)
    try:
        await conn.execute(
            "INSERT INTO users (user_id, username) VALUES ($1, $2)", late, f"ölaf-{tag}"
        )
        await conn.execute(
            "INSERT INTO local_credentials (user_id, password_hash) VALUES ($1, 'x')", late
        )
        with pytest.raises(FailedPrecondition) as refused:
            await key_usernames(conn, auth.store.schema)
        assert "users table" not in str(refused.value)
        assert "spelt as listed" in str(refused.value)

        out, _ = await user_commands("rename", f"ÖLAF-{tag}", f"Ólafur-{tag}")
        assert out.splitlines()[0] == (
            f"renamed the local user 'Ölaf-{tag}' ({olaf.user_id}) to 'Ólafur-{tag}' "
            f"('ÖLAF-{tag}' named it: usernames are one whatever their case)"
        )
        out, _ = await user_commands("rename", f"ölaf-{tag}", f"olaf2-{tag}", "--json")
        assert json.loads(out)["renamed_from"] == f"ölaf-{tag}"
        assert json.loads(out)["user_id"] == late
        assert await key_usernames(conn, auth.store.schema) == 0  # the rename keyed it
        for name, user_id in ((f"ólafur-{tag}", olaf.user_id), (f"OLAF2-{tag}", late)):
            found = await lookup(auth, name)
            assert [u.user_id for u in found.users] == [user_id], name
    finally:
        await conn.close()


async def test_a_sign_in_keys_a_user_an_old_replica_left_unkeyed(auth: AuthServer) -> None:
    tag = str(secrets.randbelow(10**8))  # digits: Greek with hex letters mixes scripts
    identity = ExternalIdentity(subject=f"oidc:a#{tag}", username=f"Ζωή-{tag}")
    zoe, _ = await auth.store.resolve(identity, "oidc")
    conn = await _raw(auth)
    try:
        await conn.execute("UPDATE users SET username_key = NULL WHERE user_id = $1", zoe.user_id)
        assert (await lookup(auth, f"ζωή-{tag}")).missing == [f"ζωή-{tag}"]

        await auth.store.resolve(identity, "oidc")  # nothing else changed

        key = await conn.fetchval("SELECT username_key FROM users WHERE user_id = $1", zoe.user_id)
        assert key == f"ζωή-{tag}"
        found = await lookup(auth, f"ΖΩΉ-{tag}")
        assert [u.user_id for u in found.users] == [zoe.user_id]
    finally:
        await conn.close()


async def test_imported_people_match_emails_and_usernames_by_the_same_key(
    auth: AuthServer,
) -> None:
    tag = secrets.token_hex(3)
    olaf, _ = await auth.store.resolve(
        ExternalIdentity(
            subject=f"oidc:a#{tag}", username=f"Ölaf-{tag}", email=f"Ölaf-{tag}@Beispiel.example"
        ),
        "oidc",
    )
    await auth.store.resolve(
        ExternalIdentity(
            subject=f"oidc:a#s{tag}", username=f"Straße-{tag}", email=f"straße-{tag}@example.org"
        ),
        "oidc",
    )
    importer = f"imp-{tag}"
    await auth.add_user(importer, groups=["admins"])
    token = (await auth.sign_in(importer)).token
    people = [
        v1.SourcePerson(key="k1", username="other", email=f"ölaf-{tag}@beispiel.example"),
        v1.SourcePerson(key="k2", username=f"ÖLAF-{tag}"),
        # Case folding would match these; lower-casing (the rule) does not.
        v1.SourcePerson(key="k3", email=f"STRASSE-{tag}@example.org"),
        v1.SourcePerson(key="k4", username=f"strasse-{tag}"),
    ]
    answer = await auth.stub.match_import_users(
        v1.MatchImportUsersRequest(
            token=token, source="trac", people=people, create_placeholders=False
        )
    )
    assert [m.matched_by for m in answer.matches] == ["email", "username", "", ""]
    assert [m.user.user_id if m.user else "" for m in answer.matches[:2]] == [olaf.user_id] * 2


async def test_every_statement_naming_a_user_compares_the_stored_key() -> None:
    by_name = [
        sql.USERS_BY_USERNAMES,
        sql.USER_BY_USERNAME,
        sql.USERNAME_HOLDER,
        sql.LOCAL_CREDENTIALS,
        sql.SET_DISABLED,
        sql.REAL_USERS_BY_USERNAME,
        sql.USERNAME_TAKEN,
    ]
    for statement in by_name:
        assert "username_key" in statement
        assert "lower(" not in statement
    assert username_key("Ölaf") == "ölaf"
    assert username_key("STRAUSS") != username_key("Straße")
    assert username_key("O\u0308laf") == username_key("Ölaf")  # NFD as NFC
