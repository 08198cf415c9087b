"""CountGroupMembers of LDAP groups: the directory's members, signed in or not (real slapd)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import TYPE_CHECKING

from auth_support import unique
from ldap_support import (
    OPEN_ACCOUNTS,
    counts,
    ldap_options,
    seed_team,
    settings_for,
    start_with_ldap,
)

from bugless_auth._ldap_group_counts import MAX_GROUPS_READ_PER_CALL
from bugless_auth.ldap import LdapAuthenticator
from bugless_proto import v1
from bugless_testing.polling import eventually
from bugless_testing.slapd import (
    GROUPS_DN,
    PEOPLE_DN,
    Slapd,
)

if TYPE_CHECKING:
    from auth_support import StartAuth


async def test_memberof_mode_counts_the_open_members_of_a_group_found_under_its_base(
    slapd_server: Slapd,
) -> None:
    team = await seed_team(slapd_server)
    settings = settings_for(slapd_server, group_entry_base=GROUPS_DN)

    found = await counts(settings, team.group, f"{team.tag}-typo")

    # ann and ben, never signed in anywhere; the locked member is not counted;
    # a group the directory does not hold is not in the answer.
    assert found == {team.group: 2}


async def test_memberof_mode_without_a_group_base_says_unknown_not_zero(
    slapd_server: Slapd,
) -> None:
    team = await seed_team(slapd_server)

    assert await counts(settings_for(slapd_server), team.group) == {team.group: None}
    # With no groups read at sign-in at all, the directory holds none.
    assert await counts(settings_for(slapd_server, group_attribute=""), team.group) == {}


async def test_group_search_mode_reads_the_member_attribute_of_the_group_entry(
    slapd_server: Slapd,
) -> None:
    team = await seed_team(slapd_server)
    by_dn = settings_for(slapd_server, group_attribute="", group_search_base=GROUPS_DN)
    by_uid = dataclasses.replace(by_dn, group_member_attribute="memberUid")

    assert await counts(by_dn, team.group, f"{team.tag}-typo") == {team.group: 2}
    # memberUid names usernames: ann counts, the locked one and a uid nobody has do not.
    assert await counts(by_uid, team.posix_group) == {team.posix_group: 1}


async def test_a_group_bigger_than_the_limit_is_unknown(slapd_server: Slapd) -> None:
    team = await seed_team(slapd_server)
    by_dn = settings_for(
        slapd_server, group_attribute="", group_search_base=GROUPS_DN, group_count_limit=2
    )
    members_of = settings_for(slapd_server, group_entry_base=GROUPS_DN, group_count_limit=1)

    # Three member values, more than 2; two open members, more than 1.
    assert await counts(by_dn, team.group) == {team.group: None}
    assert await counts(members_of, team.group) == {team.group: None}


async def test_a_user_filter_matching_the_username_by_a_rule_counts_its_open_members(
    slapd_server: Slapd,
) -> None:
    """``{username}`` as an extensible match's value: a count searches ``(uid=*)`` there.

    With ``*`` for ``{username}`` the count's search would be
    ``(uid:caseExactMatch:=*)``, no filter; the settings were refused.
    """
    team = await seed_team(slapd_server)
    exact = OPEN_ACCOUNTS.replace("(uid={username})", "(uid:caseExactMatch:={username})")
    settings = settings_for(slapd_server, user_filter=exact, group_entry_base=GROUPS_DN)
    by_dn = settings_for(
        slapd_server, user_filter=exact, group_attribute="", group_search_base=GROUPS_DN
    )

    assert settings.every_user_filter == (
        "(&(objectClass=inetOrgPerson)(!(description=locked))(uid=*))"
    )
    # ann and ben; the locked member is not counted.
    assert await counts(settings, team.group) == {team.group: 2}
    assert await counts(by_dn, team.group) == {team.group: 2}


async def test_a_count_is_kept_for_group_count_seconds(slapd_server: Slapd) -> None:
    team = await seed_team(slapd_server)
    kept = LdapAuthenticator(settings_for(slapd_server, group_entry_base=GROUPS_DN))
    fresh = LdapAuthenticator(
        settings_for(slapd_server, group_entry_base=GROUPS_DN, group_count_seconds=0)
    )
    try:
        assert await kept.group_member_counts([team.group]) == {team.group: 2}
        assert await fresh.group_member_counts([team.group]) == {team.group: 2}
        newcomer = f"{team.tag}-cy"
        await asyncio.to_thread(
            slapd_server.ldapadd,
            f"dn: uid={newcomer},{PEOPLE_DN}\nobjectClass: inetOrgPerson\nuid: {newcomer}\n"
            f"cn: {newcomer}\nsn: {newcomer}\n",
        )
        await asyncio.to_thread(
            slapd_server.ldapmodify,
            f"dn: cn={team.group},{GROUPS_DN}\nchangetype: modify\nadd: member\n"
            f"member: uid={newcomer},{PEOPLE_DN}\n",
        )

        assert await kept.group_member_counts([team.group]) == {team.group: 2}
        assert await fresh.group_member_counts([team.group]) == {team.group: 3}
    finally:
        await kept.close()
        await fresh.close()


async def test_a_directory_that_does_not_answer_in_time_gives_unknown_at_once(
    slapd_server: Slapd,
) -> None:
    silent: list[asyncio.StreamWriter] = []

    async def accept_and_ignore(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent.append(writer)

    server = await asyncio.start_server(accept_and_ignore, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = settings_for(
        slapd_server,
        urls=(f"ldap://127.0.0.1:{port}",),
        group_entry_base=GROUPS_DN,
        connect_timeout=60.0,
        operation_timeout=0.3,
    )
    started = time.monotonic()
    try:
        assert await counts(settings, "engineers") == {"engineers": None}
    finally:
        server.close()
        for writer in silent:
            writer.close()
    # The read itself is stuck connecting for connect_timeout (60 s): a call that
    # waited for it, not operation_timeout, would take that long. Half of it keeps
    # that apart with room for a loaded machine's slow event loop.
    assert time.monotonic() - started < 30


async def test_count_group_members_is_the_union_of_the_directory_and_the_store(
    start_auth_server: StartAuth, slapd_server: Slapd
) -> None:
    team = await seed_team(slapd_server)
    auth = await start_with_ldap(
        start_auth_server,
        ldap_options(slapd_server, user_filter=OPEN_ACCOUNTS, group_entry_base=GROUPS_DN),
    )
    local_only = f"{team.tag}-local"
    # ann signs in (the store learns her group); ben never does; a local user
    # is in the directory's group too, and in a group only the store has.
    await auth.sign_in(team.people[0], team.people[0])
    await auth.add_user(unique("lou"), groups=[team.group, local_only])

    answer = await auth.stub.count_group_members(
        v1.CountGroupMembersRequest(groups=[team.group, local_only])
    )

    # ann (signed in) and ben (not) from the directory, lou from the store:
    # three people, ann counted once.
    assert [(g.group, g.members, g.from_directory, g.unknown) for g in answer.groups] == [
        (team.group, 3, True, False),
        (local_only, 1, False, False),
    ]


async def test_count_group_members_says_unknown_when_the_directory_cannot_count(
    start_auth_server: StartAuth, slapd_server: Slapd
) -> None:
    team = await seed_team(slapd_server)
    auth = await start_with_ldap(
        start_auth_server, ldap_options(slapd_server, user_filter=OPEN_ACCOUNTS)
    )
    await auth.sign_in(team.people[0], team.people[0])

    answer = await auth.stub.count_group_members(v1.CountGroupMembersRequest(groups=[team.group]))

    # No group_entry_base in memberOf mode: what the store knows, marked unknown.
    assert [(g.members, g.from_directory, g.unknown) for g in answer.groups] == [(1, False, True)]


async def test_filter_characters_in_a_group_name_match_only_that_name(
    slapd_server: Slapd,
) -> None:
    team = await seed_team(slapd_server)
    members_of = settings_for(slapd_server, group_entry_base=GROUPS_DN)
    by_dn = settings_for(slapd_server, group_attribute="", group_search_base=GROUPS_DN)
    # Each would widen or break the filter unescaped; a NUL escaped as bonsai
    # does ("\\0", not RFC 4515's "\\00") makes the server refuse the filter
    # (or read the next two characters as a byte), and the count unknown.
    crafted = [
        f"{team.tag}-*",
        f"{team.group})(cn=*",
        f"{team.group}\\",
        f"{team.group}\x00",
        f"{team.group}\x0041",
    ]

    for settings in (members_of, by_dn):
        assert await counts(settings, *crafted) == {}
        assert await counts(settings, team.group) == {team.group: 2}


async def test_a_group_named_in_another_case_is_not_the_directory_s(slapd_server: Slapd) -> None:
    team = await seed_team(slapd_server)
    members_of = settings_for(slapd_server, group_entry_base=GROUPS_DN)
    by_dn = settings_for(slapd_server, group_attribute="", group_search_base=GROUPS_DN)
    shouted = team.group.upper()

    # cn matches case-insensitively, but sign-ins record the entry's own name
    # and an access list matches names exactly: an entry for the shouted name
    # gives nobody access, so the directory holds no group of that name.
    for settings in (members_of, by_dn):
        assert await counts(settings, shouted, team.group) == {team.group: 2}


async def test_reads_left_going_by_earlier_calls_are_bounded(slapd_server: Slapd) -> None:
    silent: list[asyncio.StreamWriter] = []

    async def accept_and_ignore(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent.append(writer)

    server = await asyncio.start_server(accept_and_ignore, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    backend = LdapAuthenticator(
        settings_for(
            slapd_server,
            urls=(f"ldap://127.0.0.1:{port}",),
            group_entry_base=GROUPS_DN,
            connect_timeout=600.0,
            operation_timeout=5.0,
        )
    )
    # Two views of a list of 20 new groups each, going on together: 40 reads
    # waiting on the silent directory (for connect_timeout), two views' worth, the
    # bound. Each view waits operation_timeout for its reads: 5 s, ten times the
    # 0.5 s this test once allowed the call below, so a loaded machine's slow
    # event loop does not make it look as if the call had waited.
    lists = [[f"view{view}-group{i}" for i in range(MAX_GROUPS_READ_PER_CALL)] for view in range(2)]
    views = [asyncio.create_task(backend.group_member_counts(names)) for names in lists]
    try:
        # A call starts all its reads before it waits, and the reads run after
        # both views have: once one reaches the directory, all 40 are going on.
        async def reading() -> bool:
            return bool(silent)

        await eventually(reading, "a read reaching the silent directory")

        assert await backend.group_member_counts(["one-more"]) == {"one-more": None}
        # No read started (none waited for): answered while the views still wait.
        # A call that started a read would wait operation_timeout too, and end
        # after the views, which started waiting first.
        assert not any(view.done() for view in views)

        # operation_timeout later, each view answers "unknown" for its 20.
        answers = await asyncio.gather(*views)
        assert answers == [dict.fromkeys(names) for names in lists]
    finally:
        for view in views:
            view.cancel()
        await asyncio.gather(*views, return_exceptions=True)
        await backend.close()
        server.close()
        for writer in silent:
            writer.close()


async def test_member_uids_naming_one_person_in_two_cases_count_that_person_once(
    slapd_server: Slapd,
) -> None:
    team = await seed_team(slapd_server)
    ann = team.people[0]
    # memberUid compares exactly, uid ignores case: ann and ANN are two values
    # naming one entry, and the 49 names between them put ANN in a second batch.
    fillers = [f"{team.tag}-nobody{i}" for i in range(49)]
    uids = "\n".join(f"memberUid: {uid}" for uid in [ann, *fillers, ann.upper(), team.people[1]])
    await asyncio.to_thread(
        slapd_server.ldapadd,
        f"dn: cn={team.tag}-cases,{GROUPS_DN}\nobjectClass: posixGroup\ncn: {team.tag}-cases\n"
        f"gidNumber: 4243\n{uids}\n",
    )
    by_uid = settings_for(
        slapd_server,
        group_attribute="",
        group_search_base=GROUPS_DN,
        group_member_attribute="memberUid",
    )

    # ann and ben.
    assert await counts(by_uid, f"{team.tag}-cases") == {f"{team.tag}-cases": 2}


async def test_a_group_entry_without_the_member_attribute_is_not_counted_not_empty(
    slapd_server: Slapd,
) -> None:
    team = await seed_team(slapd_server)
    empty_posix = f"{team.tag}-bare"
    await asyncio.to_thread(
        slapd_server.ldapadd,
        f"dn: cn={empty_posix},{GROUPS_DN}\nobjectClass: posixGroup\ncn: {empty_posix}\n"
        "gidNumber: 4244\n",
    )
    by_uid = settings_for(
        slapd_server,
        group_attribute="",
        group_search_base=GROUPS_DN,
        group_member_attribute="memberUid",
    )
    # groupOfNames entries list member, not uniqueMember: a setting that does
    # not fit the directory's groups, which must not read as "nobody is in it".
    wrong_attribute = dataclasses.replace(by_uid, group_member_attribute="uniqueMember")

    assert await counts(by_uid, empty_posix, team.posix_group) == {
        empty_posix: None,
        team.posix_group: 1,
    }
    assert await counts(wrong_attribute, team.group) == {team.group: None}
