"""CountGroupMembers in group-search mode: member DNs read in batches (real slapd).

How a group's member DNs become a count: read on half the pool at once, each
DN matched to the entry it names however spelled or escaped, 50 to a search;
and which entry is the group (group_entry_filter, one filter, checked when
read).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re

import pytest
from ldap_support import (
    counts,
    seed_team,
    settings_for,
)

from bugless_auth._ldap_group_reads import _dn_key, _rdn_filter, counting_connections
from bugless_auth.ldap import LdapSettings
from bugless_core.errors import InvalidArgument
from bugless_testing.slapd import (
    BASE_DN,
    GROUPS_DN,
    PEOPLE_DN,
    Slapd,
)


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


def _hex_form(tag: int, text: str) -> str:
    """``text`` as RFC 4514's ``#`` form of a BER string of type ``tag``."""
    octets = text.encode("utf-16-be" if tag == 0x1E else "utf-8")
    return "#" + bytes([tag, len(octets)]).hex() + octets.hex()


@pytest.mark.parametrize(
    ("dn", "same_as"),
    [
        ("uid=#0C03616E6E,ou=p,dc=x", "uid=ann,ou=p,dc=x"),  # UTF8String
        ("uid=#1303616e6e,ou=p,dc=x", "uid=ann,ou=p,dc=x"),  # PrintableString
        ("uid=#1603616e6e,ou=p,dc=x", "uid=ann,ou=p,dc=x"),  # IA5String
        ("uid=#0403616e6e,ou=p,dc=x", "uid=ann,ou=p,dc=x"),  # OCTET STRING
        ("cn=#1E0400E90061,ou=p,dc=x", r"cn=\C3\A9a,ou=p,dc=x"),  # BMPString: éa
        ("cn=#1C08000000E900000061,ou=p,dc=x", "cn=éa,ou=p,dc=x"),  # UniversalString
        ("cn=#0C81036A6F65,ou=p,dc=x", "cn=joe,ou=p,dc=x"),  # long-form length
        ("cn=#0C00,ou=p,dc=x", "cn=,ou=p,dc=x"),
    ],
)
def test_a_hex_form_dn_value_is_the_string_it_encodes(dn: str, same_as: str) -> None:
    assert _dn_key(dn) == _dn_key(same_as)
    assert _rdn_filter(dn) == _rdn_filter(same_as)


@pytest.mark.parametrize(
    "value",
    [
        "#0C03616E",  # shorter than its length
        "#0C02616E6E",  # longer
        "#0C8003616E6E",  # indefinite length
        "#0201FF",  # an INTEGER: no text
        "#0C02C328",  # not UTF-8
        "#0C0",  # odd digits
        "#ZZ",
        "#",
    ],
)
def test_a_hex_form_that_is_no_string_is_read_at_its_entry(value: str) -> None:
    dn = f"uid={value},ou=p,dc=x"
    assert _rdn_filter(dn) is None
    assert _dn_key(dn) == f"raw:{dn}"


def test_an_escaped_hash_is_a_character_of_the_value() -> None:
    assert _rdn_filter("uid=\\#0C03616E6E,ou=p,dc=x") == "(uid=#0C03616E6E)"


async def test_member_dns_in_hex_form_are_counted_as_the_people_they_name(
    slapd_server: Slapd,
) -> None:
    # slapd keeps a member (DN syntax) only in string form; a member
    # attribute of a string syntax keeps what it is given, as values from
    # other directories or tools may come.
    team = await seed_team(slapd_server)
    hex_ann = f"uid={_hex_form(0x0C, team.people[0])},{PEOPLE_DN}"
    hex_ben = f"uid={_hex_form(0x1E, team.people[1])},{PEOPLE_DN}"
    hex_locked = f"uid={_hex_form(0x13, team.people[2])},{PEOPLE_DN}"
    listed = [hex_ann, hex_ben, hex_locked, f"uid=#0C99,{PEOPLE_DN}"]
    descriptions = "".join(f"description: {dn}\n" for dn in listed)
    await asyncio.to_thread(
        slapd_server.ldapadd,
        f"dn: cn={team.tag}-hex,{GROUPS_DN}\nobjectClass: groupOfNames\ncn: {team.tag}-hex\n"
        f"member: uid={team.people[0]},{PEOPLE_DN}\n{descriptions}",
    )
    by_description = settings_for(
        slapd_server,
        group_attribute="",
        group_search_base=GROUPS_DN,
        group_member_attribute="description",
    )

    # ann and ben; the locked one is excluded by the user filter, and a value
    # that is no BER string names nobody.
    assert await counts(by_description, f"{team.tag}-hex") == {f"{team.tag}-hex": 2}


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
        # Balanced, yet slapd takes '(&)' as every entry and Active Directory refuses it.
        "(&)",
    ],
)
def test_a_group_entry_filter_must_be_one_filter(value: str) -> None:
    with pytest.raises(InvalidArgument, match=f"group_entry_filter: {re.escape(repr(value))}"):
        LdapSettings.from_mapping(
            {
                "urls": "ldap://127.0.0.1",
                "base_dn": PEOPLE_DN,
                "group_entry_base": GROUPS_DN,
                "group_entry_filter": value,
            }
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
