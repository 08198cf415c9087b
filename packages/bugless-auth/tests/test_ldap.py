"""The LDAP backend against a real slapd on loopback (see slapd.py)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import bonsai
import pytest
from auth_support import unique
from ldap_support import add_person, settings_for
from prometheus_client import REGISTRY

from bugless_auth.ldap import LdapAuthenticator, LdapSettings
from bugless_auth.settings import options_from_environment
from bugless_core.errors import InvalidArgument, Unavailable
from bugless_testing.ports import refused_port
from bugless_testing.slapd import (
    ADMIN_DN,
    ADMIN_PASSWORD,
    BASE_DN,
    GROUPS_DN,
    PEOPLE_DN,
    READER_DN,
    READER_PASSWORD,
    Slapd,
)


@pytest.fixture
async def ldap(slapd_server: Slapd) -> AsyncIterator[LdapAuthenticator]:
    backend = LdapAuthenticator(settings_for(slapd_server))
    yield backend
    await backend.close()


async def entry_uuid(server: Slapd, dn: str) -> str:
    client = bonsai.LDAPClient(server.url)
    client.set_credentials("SIMPLE", user=ADMIN_DN, password=ADMIN_PASSWORD)
    async with client.connect(is_async=True, timeout=2) as conn:
        (entry,) = await conn.search(dn, 0, attrlist=["entryUUID"])
        return str(entry["entryUUID"][0])


async def test_right_password_returns_the_entry_with_an_entry_uuid_subject(
    ldap: LdapAuthenticator, slapd_server: Slapd
) -> None:
    identity = await ldap.authenticate("alice", "alice-pw")

    assert identity is not None
    assert identity.subject == f"ldap:{await entry_uuid(slapd_server, f'uid=alice,{PEOPLE_DN}')}"
    assert identity.username == "alice"
    assert identity.display_name == "Alice Liddell"
    assert identity.email == "alice@bugless.test"
    assert identity.groups == ("admins", "engineers")
    assert not identity.bot


async def test_a_user_in_no_group_has_no_groups(ldap: LdapAuthenticator) -> None:
    identity = await ldap.authenticate("carol", "carol-pw")
    assert identity is not None
    assert identity.groups == ()


async def test_wrong_password_and_unknown_user_are_the_same_outcome(
    ldap: LdapAuthenticator,
) -> None:
    assert await ldap.authenticate("alice", "bob-pw") is None
    assert await ldap.authenticate("alice", "alice-pw ") is None
    assert await ldap.authenticate("mallory", "alice-pw") is None


async def test_empty_password_is_refused_before_any_bind(slapd_server: Slapd) -> None:
    # Against a closed port: an attempt to reach the directory would raise
    # Unavailable, so None proves nothing was sent (an empty password would
    # be an unauthenticated bind, which Active Directory answers with success).
    with refused_port() as port:
        unreachable = LdapAuthenticator(
            settings_for(slapd_server, urls=(f"ldap://127.0.0.1:{port}",))
        )
        assert await unreachable.authenticate("alice", "") is None
        await unreachable.close()
    live = LdapAuthenticator(settings_for(slapd_server))
    assert await live.authenticate("alice", "") is None
    await live.close()


@pytest.mark.parametrize(
    "username",
    ["*", "ali*", ")(uid=*", "alice)(uid=*", "*)(|(uid=*", "alice\\", "alice\x00", ""],
)
async def test_filter_metacharacters_in_a_username_match_nobody(
    ldap: LdapAuthenticator, username: str
) -> None:
    # Unescaped, "ali*" or "alice)(uid=*" would select alice and her password would bind.
    assert await ldap.authenticate(username, "alice-pw") is None


async def test_groups_come_from_a_group_search_when_configured(slapd_server: Slapd) -> None:
    backend = LdapAuthenticator(
        settings_for(slapd_server, group_attribute="", group_search_base=GROUPS_DN)
    )
    try:
        alice = await backend.authenticate("alice", "alice-pw")
        bob = await backend.authenticate("bob", "bob-pw")
    finally:
        await backend.close()
    assert alice is not None
    assert alice.groups == ("admins", "engineers")
    assert bob is not None
    assert bob.groups == ("engineers",)


async def test_a_group_name_with_escaped_characters_is_the_same_in_both_modes(
    slapd_server: Slapd,
) -> None:
    """memberOf mode reads a group's name from its DN, group-search mode from its entry.

    slapd writes ``Sales, EMEA+R&D #1`` in a DN as ``Sales\\2C EMEA\\2BR&D #1``: the
    name a sign-in records, an access list matches and a count looks up is
    the entry's own, in either mode.
    """
    uid = unique("sales")
    await add_person(slapd_server, uid, "pw")
    name = f"Sales, EMEA+R&D {uid}"
    escaped = name.replace(",", "\\,").replace("+", "\\+")
    await asyncio.to_thread(
        slapd_server.ldapadd,
        f"dn: cn={escaped},{GROUPS_DN}\nobjectClass: groupOfNames\ncn: {name}\n"
        f"member: uid={uid},{PEOPLE_DN}\n",
    )
    member_of = settings_for(slapd_server, group_entry_base=GROUPS_DN)
    searched = settings_for(slapd_server, group_attribute="", group_search_base=GROUPS_DN)
    for settings in (member_of, searched):
        backend = LdapAuthenticator(settings)
        try:
            identity = await backend.authenticate(uid, "pw")
            assert identity is not None
            assert identity.groups == (name,)
            assert dict(await backend.group_member_counts([name])) == {name: 1}
        finally:
            await backend.close()


async def test_a_renamed_user_keeps_their_subject(
    ldap: LdapAuthenticator, slapd_server: Slapd
) -> None:
    before = await ldap.authenticate("erin", "erin-pw")
    assert before is not None

    client = bonsai.LDAPClient(slapd_server.url)
    client.set_credentials("SIMPLE", user=ADMIN_DN, password=ADMIN_PASSWORD)
    async with client.connect(is_async=True, timeout=2) as conn:
        (entry,) = await conn.search(f"uid=erin,{PEOPLE_DN}", 0)
        await entry.rename(f"uid=erin.renamed,{PEOPLE_DN}")

    assert await ldap.authenticate("erin", "erin-pw") is None
    after = await ldap.authenticate("erin.renamed", "erin-pw")
    assert after is not None
    assert after.subject == before.subject
    assert after.username == "erin.renamed"
    assert after.groups == before.groups  # memberOf-refint followed the rename


async def test_a_closed_port_is_unavailable_not_a_wrong_password(slapd_server: Slapd) -> None:
    with refused_port() as port:
        url = f"ldap://127.0.0.1:{port}"
        backend = LdapAuthenticator(settings_for(slapd_server, urls=(url,)))
        with pytest.raises(Unavailable, match=f"LDAP directory at {url} is unreachable"):
            await backend.authenticate("alice", "alice-pw")
        await backend.close()


async def test_a_server_that_never_answers_times_out_as_unavailable(slapd_server: Slapd) -> None:
    silent: list[asyncio.StreamWriter] = []

    async def accept_and_ignore(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent.append(writer)

    server = await asyncio.start_server(accept_and_ignore, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    backend = LdapAuthenticator(
        settings_for(
            slapd_server,
            urls=(f"ldap://127.0.0.1:{port}",),
            connect_timeout=0.3,
            operation_timeout=60.0,
            pool_wait_seconds=60.0,
        )
    )
    started = time.monotonic()
    try:
        with pytest.raises(Unavailable):
            await backend.authenticate("alice", "alice-pw")
        took = time.monotonic() - started
    finally:
        await backend.close()
        server.close()
        for writer in silent:
            writer.close()
    # The bind of a new connection is what goes unanswered: connect_timeout (0.3 s)
    # ends it. Every other wait on the way is 60 s, so half of that tells
    # connect_timeout from any of them, with room for a loaded machine.
    assert took < 30, f"{took:.1f} s"


async def test_an_unreachable_primary_fails_over_to_the_replica(slapd_server: Slapd) -> None:
    with refused_port() as port:
        backend = LdapAuthenticator(
            settings_for(slapd_server, urls=(f"ldap://127.0.0.1:{port}", slapd_server.url))
        )
        try:
            identity = await backend.authenticate("bob", "bob-pw")
        finally:
            await backend.close()
    assert identity is not None
    assert identity.username == "bob"


async def test_a_directory_restart_is_unavailable_then_recovers(own_slapd: Slapd) -> None:
    backend = LdapAuthenticator(settings_for(own_slapd, pool_size=2))
    try:
        assert await backend.authenticate("alice", "alice-pw") is not None  # pool now warm
        own_slapd.stop()
        with pytest.raises(Unavailable):
            await backend.authenticate("alice", "alice-pw")
        own_slapd.start()
        # The pooled connections died with the old process; the pool replaces them.
        assert await backend.authenticate("alice", "alice-pw") is not None
    finally:
        await backend.close()


async def test_wrong_service_account_credentials_are_unavailable(slapd_server: Slapd) -> None:
    backend = LdapAuthenticator(settings_for(slapd_server, bind_password="nope"))
    with pytest.raises(Unavailable, match="service account"):
        await backend.authenticate("alice", "alice-pw")
    await backend.close()


@pytest.mark.parametrize("transport", ["starttls", "ldaps"])
async def test_tls_with_the_configured_ca(slapd_server: Slapd, transport: str) -> None:
    urls = (slapd_server.ldaps_url,) if transport == "ldaps" else (slapd_server.url,)
    backend = LdapAuthenticator(
        settings_for(
            slapd_server,
            urls=urls,
            start_tls=transport == "starttls",
            ca_file=str(slapd_server.ca_file),
        )
    )
    try:
        identity = await backend.authenticate("bob", "bob-pw")
    finally:
        await backend.close()
    assert identity is not None


async def test_an_untrusted_server_certificate_is_unavailable(slapd_server: Slapd) -> None:
    backend = LdapAuthenticator(settings_for(slapd_server, urls=(slapd_server.ldaps_url,)))
    with pytest.raises(Unavailable):
        await backend.authenticate("bob", "bob-pw")
    await backend.close()


async def test_many_concurrent_logins_share_a_small_pool(slapd_server: Slapd) -> None:
    # 25 binds queue on 2 connections: the timeouts must cover the queue on a loaded machine.
    backend = LdapAuthenticator(
        settings_for(
            slapd_server,
            pool_size=2,
            connect_timeout=20.0,
            operation_timeout=20.0,
            pool_wait_seconds=20.0,
        )
    )
    try:
        results = await asyncio.gather(
            *(backend.authenticate("bob", "bob-pw") for _ in range(20)),
            *(backend.authenticate("bob", "wrong") for _ in range(5)),
        )
    finally:
        await backend.close()
    assert sum(r is not None for r in results) == 20
    assert results[20:] == [None] * 5


async def test_an_exhausted_pool_is_logged_once_per_streak(
    slapd_server: Slapd, caplog: pytest.LogCaptureFixture
) -> None:
    # One pooled connection, held busy by a real search that waits for the test; every
    # sign-in meanwhile meets the exhausted pool and answers UNAVAILABLE, after the pool's
    # own wait (pool_wait_seconds), not the search's operation_timeout.
    backend = LdapAuthenticator(
        settings_for(slapd_server, pool_size=1, operation_timeout=30.0, pool_wait_seconds=0.3)
    )
    counted_before = REGISTRY.get_sample_value(
        "bugless_auth_ldap_pool_exhausted_total", {"server": slapd_server.url}
    )
    pool = backend._directory._pools[slapd_server.url]
    release = asyncio.Event()
    held = asyncio.Event()

    async def hold(conn: Any) -> list[Any]:
        result: list[Any] = await conn.search(BASE_DN, 0, attrlist=["dc"], timeout=5.0)
        held.set()
        await release.wait()
        return result

    try:
        holder = asyncio.create_task(pool.run(hold, acquire_timeout=5.0))
        await held.wait()
        with caplog.at_level(logging.DEBUG, logger="bugless_auth.ldap"):
            started = time.monotonic()
            results = await asyncio.gather(
                *(backend.authenticate("bob", "bob-pw") for _ in range(6)),
                return_exceptions=True,
            )
            waited = time.monotonic() - started
            assert all(isinstance(r, Unavailable) for r in results), results
            assert 0.3 <= waited < 10.0, "pool_wait_seconds bounds the wait, not the 30 s"
            assert not backend._directory.breakers.is_open(slapd_server.url)  # busy, not dead
            release.set()
            await holder
            assert await backend.authenticate("bob", "bob-pw") is not None
            assert await backend.authenticate("bob", "bob-pw") is not None
    finally:
        release.set()
        await backend.close()
    pool_lines = [r for r in caplog.records if r.getMessage().startswith("ldap pool for")]
    levels = [r.levelno for r in pool_lines]
    assert levels == [logging.WARNING] + [logging.DEBUG] * 5 + [logging.INFO], pool_lines
    assert "exhausted, no connection free within 0.3 s" in pool_lines[0].getMessage()
    assert "(pool_wait_seconds; 1 since start)" in pool_lines[0].getMessage()
    assert "(pool_wait_seconds; 6 since start)" in pool_lines[5].getMessage()
    assert backend._directory.exhaustions == {slapd_server.url: 6}
    counted = REGISTRY.get_sample_value(
        "bugless_auth_ldap_pool_exhausted_total", {"server": slapd_server.url}
    )
    assert counted == (counted_before or 0.0) + 6
    assert "working again" in pool_lines[-1].getMessage()
    assert "(6 failed requests)" in pool_lines[-1].getMessage()


async def test_settings_accept_flag_and_env_strings(slapd_server: Slapd) -> None:
    with refused_port() as port:
        backend = await LdapAuthenticator.open(
            {
                "urls": f"ldap://127.0.0.1:{port}, {slapd_server.url}",
                "base_dn": BASE_DN,
                "bind_dn": READER_DN,
                "bind_password": READER_PASSWORD,
                "start_tls": "false",
                "pool_size": "2",
                "connect_timeout": "1.5",
                "server_retry_seconds": "2.5",
                "pool_wait_seconds": "0.5",
                "label": "Corp directory",
                "identity_store": object(),  # service-provided objects are ignored
            }
        )
        try:
            assert backend.settings.pool_size == 2
            assert backend.settings.connect_timeout == 1.5
            assert backend.settings.server_retry_seconds == 2.5
            assert backend.settings.pool_wait_seconds == 0.5
            assert backend.display_name == "Corp directory"
            assert await backend.authenticate("bob", "bob-pw") is not None
        finally:
            await backend.close()


def test_the_retry_time_of_a_failed_server_comes_from_its_env_variable() -> None:
    environ = {
        "BUGLESS_AUTH_LDAP_URLS": "ldap://primary,ldap://replica",
        "BUGLESS_AUTH_LDAP_BASE_DN": BASE_DN,
        "BUGLESS_AUTH_LDAP_SERVER_RETRY_SECONDS": "12.5",
        "BUGLESS_AUTH_LDAP_POOL_WAIT_SECONDS": "0.75",
    }
    options = options_from_environment(environ, ["ldap"])

    settings = LdapSettings.from_mapping(options["ldap"])

    assert settings.server_retry_seconds == 12.5
    assert settings.pool_wait_seconds == 0.75
    default = LdapSettings(urls=("ldap://x",), base_dn="dc=x")
    assert default.server_retry_seconds == 5.0
    assert default.pool_wait_seconds == 2.0


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"urls": "ldap://x", "base_dn": "dc=x", "bsae_dn": "dc=y"}, "unknown bsae_dn"),
        ({"urls": "http://x", "base_dn": "dc=x"}, "not an ldap"),
        ({"urls": "ldap://x"}, "base_dn"),
        ({"urls": "ldap://x", "base_dn": "dc=x", "user_filter": "(uid=*)"}, "placeholder"),
        ({"urls": "ldap://x", "base_dn": "dc=x", "start_tls": "maybe"}, "start_tls"),
        ({"urls": "ldap://x", "base_dn": "dc=x", "pool_size": "0"}, "pool_size"),
        ({"urls": "ldap://x", "base_dn": "dc=x", "server_retry_seconds": "0"}, "server_retry"),
        ({"urls": "ldap://x", "base_dn": "dc=x", "server_retry_seconds": "soon"}, "server_retry"),
        ({"urls": "ldap://x", "base_dn": "dc=x", "server_retry_seconds": "inf"}, "server_retry"),
        ({"urls": "ldap://x", "base_dn": "dc=x", "pool_wait_seconds": "0"}, "pool_wait"),
        ({"urls": "ldap://x", "base_dn": "dc=x", "pool_wait_seconds": "nan"}, "pool_wait"),
    ],
)
async def test_bad_settings_name_the_field(config: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        await LdapAuthenticator.open(config)


@pytest.mark.parametrize("setting", ["connect_timeout", "operation_timeout"])
@pytest.mark.parametrize("value", ["0", "-1", "inf", "nan"])
def test_a_bad_timeout_is_refused_naming_the_setting_and_its_value(
    setting: str, value: str
) -> None:
    """Before, both were "ldap timeouts: must be positive", and inf and nan were taken.

    An infinite connect timeout waits forever on a hung server instead of
    trying the next; a NaN one compares false with everything.
    """
    with pytest.raises(InvalidArgument) as info:
        LdapSettings.from_mapping({"urls": "ldap://x", "base_dn": "dc=x", setting: value})
    assert info.value.message == (
        f"ldap {setting}: {float(value)} is not a positive number of seconds"
    )


@pytest.mark.parametrize(
    ("setting", "value", "wrong"),
    [
        # An early ')' closes the filter: AND-ed with a re-sync's or a count's
        # conditions, the rest lands outside the AND and widens what it selects.
        (
            "user_filter",
            "(&(objectClass=inetOrgPerson)(uid={username})))(|(uid=*)",
            "text after the filter's closing ')' at character 47",
        ),
        (
            "user_filter",
            "(&(objectClass=inetOrgPerson)(uid={username})",
            "expected ')' to close the filter at character 46",
        ),
        (
            "user_filter",
            "(objectClass=inetOrgPerson)(uid={username})",
            "text after the filter's closing ')' at character 28",
        ),
        ("user_filter", "uid={username}", "expected '(' to open a filter at character 1"),
        # Balanced, and still refused by the client library or the server.
        ("user_filter", "(&(uid={username})(|))", "'|' with no filter in it"),
        ("user_filter", "(&(uid={username})(mail=a\\zz))", "'\\' not followed by two hex"),
        ("user_filter", "(uid={username}**)", "'**' (an empty substring)"),
        ("user_filter", "({username}=x)", "'{username}' is not an attribute name"),
        (
            "group_search_filter",
            "(&(objectClass=groupOfNames)(member={dn})))(|(cn=*)",
            "text after the filter's closing ')'",
        ),
        ("group_search_filter", "(objectClass=groupOfNames)(member={dn})", "text after"),
        ("group_search_filter", "member={dn}", "expected '('"),
        ("group_search_filter", "", "expected '('"),
        ("group_search_filter", "(&(objectClass=groupOfNames)(member~={dn}*))", "'*' in a value"),
    ],
)
async def test_every_filter_setting_must_be_one_filter(
    setting: str, value: str, wrong: str
) -> None:
    config = {"urls": "ldap://127.0.0.1", "base_dn": "dc=x", setting: value}
    if setting == "group_search_filter":
        config["group_search_base"] = "ou=groups,dc=x"
    with pytest.raises(InvalidArgument) as info:
        await LdapAuthenticator.open(config)
    prefix = f"ldap {setting}: {value!r} is not an LDAP filter (RFC 4515): "
    assert info.value.message.startswith(prefix), info.value.message
    assert info.value.message.removeprefix(prefix).startswith(wrong), info.value.message


def test_a_user_filter_with_the_username_where_no_star_can_be_is_taken() -> None:
    # Sign-ins send (uid:caseExactMatch:=alice); the re-sync and the counts
    # send (uid=*) for it, where a '*' for {username} would be no filter.
    for value, every_user in [
        ("(&(objectClass=inetOrgPerson)(uid:caseExactMatch:={username}))", "(uid=*)"),
        ("(&(objectClass=inetOrgPerson)(uid>={username}))", "(uid=*)"),
        ("(&(objectClass=inetOrgPerson)(uid=*{username}))", "(uid=*)"),
    ]:
        settings = LdapSettings.from_mapping(
            {"urls": "ldap://127.0.0.1", "base_dn": "dc=x", "user_filter": value}
        )
        assert settings.every_user_filter == f"(&(objectClass=inetOrgPerson){every_user})"


def test_a_filter_setting_nothing_sends_is_not_checked_until_a_base_makes_it_sent() -> None:
    bad = "(&(objectClass=groupOfNames)"
    unused = {"urls": "ldap://127.0.0.1", "base_dn": "dc=x", "group_search_filter": bad}
    assert LdapSettings.from_mapping(unused).group_search_filter == bad
    with pytest.raises(InvalidArgument, match="ldap group_search_filter: "):
        LdapSettings.from_mapping({**unused, "group_search_base": "ou=groups,dc=x"})
    # group_entry_filter: read by group counts, which need a base (either mode).
    counted_by = [{"group_entry_base": "ou=groups,dc=x"}, {"group_search_base": "ou=groups,dc=x"}]
    entry = {"urls": "ldap://127.0.0.1", "base_dn": "dc=x", "group_entry_filter": bad}
    assert LdapSettings.from_mapping(entry).group_entry_filter == bad
    no_groups = {**entry, "group_entry_base": "ou=groups,dc=x", "group_attribute": ""}
    assert LdapSettings.from_mapping(no_groups).group_entry_filter == bad
    for base in counted_by:
        with pytest.raises(InvalidArgument, match="ldap group_entry_filter: "):
            LdapSettings.from_mapping({**entry, **base})


def test_filter_settings_of_nested_filters_and_escaped_parentheses_are_taken() -> None:
    user_filter = (
        "(&(|(objectClass=inetOrgPerson)(objectClass=person))(!(cn=a\\29b))(uid={username}))"
    )
    group_search_filter = "(&(objectClass=groupOfNames)(|(member={dn})(memberUid={username})))"
    settings = LdapSettings.from_mapping(
        {
            "urls": "ldap://127.0.0.1",
            "base_dn": "dc=x",
            "user_filter": user_filter,
            "group_search_filter": group_search_filter,
        }
    )
    assert (settings.user_filter, settings.group_search_filter) == (
        user_filter,
        group_search_filter,
    )


async def test_a_filter_the_server_rejects_is_unavailable_not_a_wrong_password(
    slapd_server: Slapd,
) -> None:
    # The start check refuses what it can tell is no filter; a server may
    # still refuse one it passed (Active Directory refuses (&), which slapd
    # takes), as slapd refuses a filter nested thousands deep, which the check
    # would refuse too: it is set past the check here to reach that refusal.
    settings = settings_for(slapd_server)
    deep = "(&" * 5000 + "(uid={username})" + ")" * 5000
    object.__setattr__(settings, "user_filter", deep)
    backend = LdapAuthenticator(settings)
    with pytest.raises(Unavailable, match=r"refused the search: .*check user_filter"):
        await backend.authenticate("alice", "alice-pw")
    await backend.close()


def test_the_module_imports_without_bonsai() -> None:
    # The plugin registers every backend class on every install; only opening
    # an ldap backend needs the extra, and it says which.
    code = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "bonsai":
            raise ImportError("no bonsai here")
sys.meta_path.insert(0, Block())
from bugless_auth.ldap import LdapAuthenticator, LdapSettings
from bugless_auth.settings import options_from_environment
from bugless_core.errors import FailedPrecondition
try:
    LdapAuthenticator(LdapSettings(urls=("ldap://x",), base_dn="dc=x"))
except FailedPrecondition as exc:
    assert "bugless-auth[ldap]" in exc.message, exc.message
    print("ok")
"""
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True
    )
    assert result.stdout.strip() == "ok", result.stderr
