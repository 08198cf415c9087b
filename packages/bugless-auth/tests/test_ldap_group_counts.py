"""CountGroupMembers of LDAP groups: the directory's members, signed in or not (real slapd)."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import secrets
import time
from typing import TYPE_CHECKING, Any

import pytest
from auth_support import unique
from ldap_support import ldap_options, start_with_ldap

from bugless_auth._ldap_group_counts import MAX_GROUPS_READ_PER_CALL
from bugless_auth._ldap_group_reads import counting_connections
from bugless_auth.ldap import LdapAuthenticator, LdapSettings
from bugless_core.errors import InvalidArgument
from bugless_proto import v1
from bugless_testing.slapd import (
    BASE_DN,
    GROUPS_DN,
    PEOPLE_DN,
    READER_DN,
    READER_PASSWORD,
    Slapd,
    ssha,
)

if TYPE_CHECKING:
    from auth_support import StartAuth

#: Excludes entries described as locked, as a deployment's filter leaves out disabled accounts.
OPEN_ACCOUNTS = "(&(objectClass=inetOrgPerson)(!(description=locked))(uid={username}))"


@dataclasses.dataclass(frozen=True)
class Team:
    """People and groups of one test: three people, one of them locked."""

    tag: str

    @property
    def people(self) -> tuple[str, str, str]:
        return (f"{self.tag}-ann", f"{self.tag}-ben", f"{self.tag}-locked")

    @property
    def group(self) -> str:
        """A groupOfNames of all three (DN members)."""
        return f"{self.tag}-team"

    @property
    def posix_group(self) -> str:
        """A posixGroup (memberUid) of ann, the locked one and a uid nobody has."""
        return f"{self.tag}-posix"


async def seed_team(server: Slapd) -> Team:
    team = Team(f"gc{secrets.token_hex(3)}")
    entries = []
    for uid in team.people:
        locked = "\ndescription: locked" if uid.endswith("locked") else ""
        entries.append(
            f"dn: uid={uid},{PEOPLE_DN}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\n"
            f"sn: {uid}\nmail: {uid}@bugless.test\nuserPassword: {ssha(uid)}{locked}"
        )
    members = "\n".join(f"member: uid={uid},{PEOPLE_DN}" for uid in team.people)
    entries.append(
        f"dn: cn={team.group},{GROUPS_DN}\nobjectClass: groupOfNames\ncn: {team.group}\n{members}"
    )
    entries.append(
        f"dn: cn={team.posix_group},{GROUPS_DN}\nobjectClass: posixGroup\n"
        f"cn: {team.posix_group}\ngidNumber: 4242\nmemberUid: {team.people[0]}\n"
        f"memberUid: {team.people[2]}\nmemberUid: {team.tag}-nobody"
    )
    await asyncio.to_thread(server.ldapadd, "\n\n".join(entries) + "\n")
    return team


def settings_for(server: Slapd, **overrides: Any) -> LdapSettings:
    base = LdapSettings(
        urls=(server.url,),
        base_dn=PEOPLE_DN,
        bind_dn=READER_DN,
        bind_password=READER_PASSWORD,
        user_filter=OPEN_ACCOUNTS,
        connect_timeout=2.0,
        operation_timeout=2.0,
    )
    return dataclasses.replace(base, **overrides)


async def counts(settings: LdapSettings, *groups: str) -> dict[str, int | None]:
    backend = LdapAuthenticator(settings)
    try:
        return dict(await backend.group_member_counts(groups))
    finally:
        await backend.close()


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
        connect_timeout=10.0,
        operation_timeout=0.3,
    )
    started = time.monotonic()
    try:
        assert await counts(settings, "engineers") == {"engineers": None}
    finally:
        server.close()
        for writer in silent:
            writer.close()
    assert time.monotonic() - started < 2


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
            connect_timeout=30.0,
            operation_timeout=1.0,
        )
    )
    try:
        # Each view of a list of 20 new groups leaves 20 reads waiting on the
        # silent directory after it answers "unknown"; two views' worth is the bound.
        for view in range(2):
            names = [f"view{view}-group{i}" for i in range(MAX_GROUPS_READ_PER_CALL)]
            assert await backend.group_member_counts(names) == dict.fromkeys(names)
        started = time.monotonic()
        assert await backend.group_member_counts(["one-more"]) == {"one-more": None}
        # No read started (none waited for): answered at once, not after operation_timeout.
        assert time.monotonic() - started < 0.5
    finally:
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


class ConnectionCountingRelay:
    """Relays connections to a slapd on loopback and counts those opened through it."""

    def __init__(self, target_port: int) -> None:
        self.opened = 0
        self._target_port = target_port
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> str:
        """Listen on a port the system picks; the ``ldap://`` URL to give the backend."""
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return f"ldap://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.opened += 1
        target_reader, target_writer = await asyncio.open_connection("127.0.0.1", self._target_port)
        self._writers += [writer, target_writer]

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            sink.close()

        await asyncio.gather(pipe(reader, target_writer), pipe(target_reader, writer))

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()


async def seed_big_group(server: Slapd, tag: str, size: int) -> str:
    """A groupOfNames of ``size`` new people; its name."""
    uids = [f"{tag}-m{i:04d}" for i in range(size)]
    entries = [
        f"dn: uid={uid},{PEOPLE_DN}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}"
        for uid in uids
    ]
    members = "\n".join(f"member: uid={uid},{PEOPLE_DN}" for uid in uids)
    entries.append(
        f"dn: cn={tag}-big,{GROUPS_DN}\nobjectClass: groupOfNames\ncn: {tag}-big\n{members}"
    )
    await asyncio.to_thread(server.ldapadd, "\n\n".join(entries) + "\n")
    return f"{tag}-big"


async def test_member_dns_are_read_on_half_the_pool_at_once(slapd_server: Slapd) -> None:
    team = await seed_team(slapd_server)
    big = await seed_big_group(slapd_server, team.tag, 300)
    relay = ConnectionCountingRelay(slapd_server.port)
    url = await relay.start()
    settings = settings_for(
        slapd_server,
        urls=(url,),
        group_attribute="",
        group_search_base=GROUPS_DN,
        pool_size=6,
        operation_timeout=10.0,
    )
    try:
        found = await counts(settings, big, team.group)
    finally:
        relay.close()

    assert found == {big: 300, team.group: 2}
    # Two groups' reads, 300 members found 50 to a search: concurrent, on
    # counting_connections(6) == 3 connections and never more (the other
    # three are the sign-ins'). Read one at a time, one connection per group.
    assert counting_connections(6) == 3
    assert relay.opened == 3


async def test_member_dns_count_the_entries_they_name_however_spelled(
    slapd_server: Slapd,
) -> None:
    team = await seed_team(slapd_server)
    ann, ben, _ = team.people
    former = f"ou={team.tag}-former,{PEOPLE_DN}"
    twin, ghost = f"{team.tag}-twin", f"{team.tag}-ghost"
    entries = [f"dn: {former}\nobjectClass: organizationalUnit\nou: {team.tag}-former"]
    # twin has an entry in both OUs, ghost only in people: the group names
    # both in the former OU, so twin counts once and ghost not at all, though
    # an entry with ghost's RDN exists.
    for uid, parent in ((twin, PEOPLE_DN), (twin, former), (ghost, PEOPLE_DN)):
        entries.append(
            f"dn: uid={uid},{parent}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}"
        )
    # An RDN with an escaped comma, which bonsai's LDAPDN keeps escaped.
    doe = f"cn=Doe\\, {team.tag},{PEOPLE_DN}"
    entries.append(
        f"dn: {doe}\nobjectClass: inetOrgPerson\nuid: {team.tag}-doe\ncn: Doe, {team.tag}\nsn: Doe"
    )
    members = [
        f"uid={ann},OU=PEOPLE,{PEOPLE_DN.partition(',')[2].upper()}",  # another case
        f"uid={ben},  ou=people,dc=bugless,dc=test",
        f"uid={twin},{former}",
        f"uid={ghost},{former}",
        doe,
    ]
    listed = "\n".join(f"member: {dn}" for dn in members)
    entries.append(
        f"dn: cn={team.tag}-mixed,{GROUPS_DN}\nobjectClass: groupOfNames\n"
        f"cn: {team.tag}-mixed\n{listed}"
    )
    await asyncio.to_thread(slapd_server.ldapadd, "\n\n".join(entries) + "\n")
    by_dn = settings_for(slapd_server, group_attribute="", group_search_base=GROUPS_DN)

    # ann, ben, the former OU's twin and Doe.
    assert await counts(by_dn, f"{team.tag}-mixed") == {f"{team.tag}-mixed": 4}


async def test_an_entry_of_another_kind_named_as_the_group_is_not_taken_for_it(
    slapd_server: Slapd,
) -> None:
    team = await seed_team(slapd_server)
    namesake = f"{team.tag}-namesake"
    # A person whose cn is the group's name, and a posixGroup of the same
    # name as the groupOfNames: each is a second entry of the group's name.
    await asyncio.to_thread(
        slapd_server.ldapadd,
        f"dn: uid={namesake},{PEOPLE_DN}\nobjectClass: inetOrgPerson\nuid: {namesake}\n"
        f"cn: {team.group}\nsn: {namesake}\n\n"
        f"dn: ou={team.tag},{GROUPS_DN}\nobjectClass: organizationalUnit\nou: {team.tag}\n\n"
        f"dn: cn={team.group},ou={team.tag},{GROUPS_DN}\nobjectClass: posixGroup\n"
        f"cn: {team.group}\ngidNumber: 4245\nmemberUid: {team.people[1]}\n",
    )
    whole_tree = settings_for(slapd_server, group_entry_base=BASE_DN)
    any_entry = dataclasses.replace(whole_tree, group_entry_filter="(objectClass=*)")
    by_dn = settings_for(slapd_server, group_attribute="", group_search_base=GROUPS_DN)
    posix = dataclasses.replace(
        by_dn, group_member_attribute="memberUid", group_entry_filter="(objectClass=posixGroup)"
    )

    # memberOf mode: by default only an entry of a group class is the group.
    assert await counts(whole_tree, team.group) == {team.group: 2}
    # Any entry: the group and the person (and the posixGroup) are several.
    assert await counts(any_entry, team.group) == {team.group: None}
    # Group-search mode takes any entry by default; the filter picks one kind.
    assert await counts(by_dn, team.group) == {team.group: None}
    assert await counts(posix, team.group) == {team.group: 1}


@pytest.mark.parametrize(
    "value",
    [
        "objectClass=group",
        # Parentheses at both ends but not one filter: AND-ed with the
        # group's name, the first closes the AND early; the others leave the
        # server to refuse every count.
        "(objectClass=group))(|(cn=x)",
        "(&(objectClass=group)(cn=a)",
        "(objectClass=group)(cn=a)",
        "()",
    ],
)
def test_a_group_entry_filter_must_be_one_filter(value: str) -> None:
    with pytest.raises(InvalidArgument, match=f"group_entry_filter: {re.escape(repr(value))}"):
        LdapSettings.from_mapping(
            {"urls": "ldap://127.0.0.1", "base_dn": PEOPLE_DN, "group_entry_filter": value}
        )


def test_a_group_entry_filter_of_nested_filters_is_taken() -> None:
    value = "(|(objectClass=groupOfNames)(&(objectClass=posixGroup)(cn=a\\29b)))"
    settings = LdapSettings.from_mapping(
        {"urls": "ldap://127.0.0.1", "base_dn": PEOPLE_DN, "group_entry_filter": value}
    )
    assert settings.group_entry_filter == value


class SearchCountingRelay(ConnectionCountingRelay):
    """A relay that also counts the SearchRequests clients send through it (RFC 4511 BER)."""

    def __init__(self, target_port: int) -> None:
        super().__init__(target_port)
        self.searches = 0

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counted = asyncio.StreamReader()
        buffer = bytearray()

        async def count_requests() -> None:
            while data := await reader.read(65536):
                buffer.extend(data)
                counted.feed_data(data)
                while (size := _ber_message_size(buffer)) is not None:
                    message = bytes(buffer[:size])
                    del buffer[:size]
                    self.searches += _is_search_request(message)
            counted.feed_eof()

        counting = asyncio.create_task(count_requests())
        try:
            await super()._relay(counted, writer)
        finally:
            counting.cancel()


def _ber_length(data: bytes | bytearray, at: int) -> tuple[int, int] | None:
    """(length, where its content starts) of the BER length at ``at``; None if incomplete."""
    if at >= len(data):
        return None
    first = data[at]
    if first < 0x80:
        return first, at + 1
    octets = first & 0x7F
    if at + 1 + octets > len(data):
        return None
    return int.from_bytes(data[at + 1 : at + 1 + octets], "big"), at + 1 + octets


def _ber_message_size(data: bytearray) -> int | None:
    """The size of the first whole LDAPMessage in ``data``; None until it has arrived."""
    length = _ber_length(data, 1)
    if length is None or length[1] + length[0] > len(data):
        return None
    return length[1] + length[0]


def _is_search_request(message: bytes) -> bool:
    """Whether the LDAPMessage's protocolOp is a SearchRequest ([APPLICATION 3])."""
    body = _ber_length(message, 1)
    assert body is not None
    message_id = _ber_length(message, body[1] + 1)  # messageID: INTEGER
    assert message_id is not None
    return message[message_id[1] + message_id[0]] == 0x63


async def test_escaped_member_dns_are_found_in_their_batch_not_read_one_by_one(
    slapd_server: Slapd,
) -> None:
    """``cn=Doe\\, Ann`` (as Active Directory names people) is found by its RDN's value.

    Before, the filter kept the escape (``(cn=Doe\\5c, Ann)``) and matched
    nothing, and slapd spells the member ``cn=Doe\\2C Ann`` where the entry
    reads ``cn=Doe\\, Ann``: each member was read at its own entry, a round
    trip each, though counted right.
    """
    team = await seed_team(slapd_server)
    people = [f"cn=Doe\\, {team.tag} {i:02d},{PEOPLE_DN}" for i in range(60)]
    entries = [
        f"dn: {dn}\nobjectClass: inetOrgPerson\nuid: {team.tag}-doe{i:02d}\n"
        f"cn: Doe, {team.tag} {i:02d}\nsn: Doe"
        for i, dn in enumerate(people)
    ]
    listed = "\n".join(f"member: {dn}" for dn in people)
    entries.append(
        f"dn: cn={team.tag}-does,{GROUPS_DN}\nobjectClass: groupOfNames\n"
        f"cn: {team.tag}-does\n{listed}"
    )
    await asyncio.to_thread(slapd_server.ldapadd, "\n\n".join(entries) + "\n")
    relay = SearchCountingRelay(slapd_server.port)
    url = await relay.start()
    settings = settings_for(
        slapd_server, urls=(url,), group_attribute="", group_search_base=GROUPS_DN
    )
    try:
        found = await counts(settings, f"{team.tag}-does")
    finally:
        relay.close()

    assert found == {f"{team.tag}-does": 60}
    # The group's entry, then its 60 members found 50 to a search.
    assert relay.searches == 3
