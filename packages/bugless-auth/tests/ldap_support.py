"""What the Authenticator's LDAP tests share: its options, a server on them, directory changes.

The sign-in tests of ``test_ldap_oidc_service``, the group counts and the
resync of people a directory changed all start their Authenticators and
change slapd's entries the same way; the group count tests
(``test_ldap_group_counts``, ``test_ldap_member_dns``) also seed a Team and
count its groups through a backend of their own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from typing import TYPE_CHECKING, Any

import bonsai

from bugless_auth.ldap import LdapAuthenticator, LdapSettings
from bugless_proto import v1
from bugless_testing.slapd import (
    ADMIN_DN,
    ADMIN_PASSWORD,
    GROUPS_DN,
    PEOPLE_DN,
    READER_DN,
    READER_PASSWORD,
    Slapd,
    ssha,
)

if TYPE_CHECKING:
    from auth_support import AuthServer, StartAuth


def who(result: v1.AuthenticationResult) -> tuple[v1.Identity, v1.User]:
    """The identity and user of a sign-in (both always set on success)."""
    assert result.identity is not None
    assert result.identity.user is not None
    return result.identity, result.identity.user


def ldap_options(server: Slapd, **overrides: str) -> dict[str, str]:
    """The ldap backend's options for ``server``'s people, bound as its reader (2 s timeouts)."""
    return {
        "urls": server.url,
        "base_dn": PEOPLE_DN,
        "bind_dn": READER_DN,
        "bind_password": READER_PASSWORD,
        "connect_timeout": "2",
        "operation_timeout": "2",
        **overrides,
    }


async def start_with_ldap(start_auth_server: StartAuth, options: dict[str, str]) -> AuthServer:
    """An Authenticator whose one backend is ldap, with ``options``."""
    return await start_auth_server(
        authenticators=("ldap",), authenticator_options={"ldap": options}
    )


async def add_person(server: Slapd, uid: str, password: str) -> None:
    """A person ``uid`` under the people DN (display name, mail) with ``password``."""
    ldif = (
        f"dn: uid={uid},{PEOPLE_DN}\nobjectClass: inetOrgPerson\nuid: {uid}\n"
        f"cn: {uid}\nsn: {uid}\ndisplayName: {uid.title()}\nmail: {uid}@bugless.test\n"
        f"userPassword: {ssha(password)}\n"
    )
    await asyncio.to_thread(server.ldapadd, ldif)


async def rename(server: Slapd, uid: str, new_uid: str) -> None:
    """Rename a person's entry in the directory, as its administrator would (a new uid)."""
    client = bonsai.LDAPClient(server.url)
    client.set_credentials("SIMPLE", user=ADMIN_DN, password=ADMIN_PASSWORD)
    async with client.connect(is_async=True, timeout=2) as conn:
        (entry,) = await conn.search(f"uid={uid},{PEOPLE_DN}", 0)
        await entry.rename(f"uid={new_uid},{PEOPLE_DN}")


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
    """A new Team in ``server``: its three people, its groupOfNames and its posixGroup."""
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
    """LDAP settings reading ``server``'s open accounts as its reader, with short timeouts."""
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
    """The member counts of ``groups`` as a backend on ``settings`` reads them (None: unknown)."""
    backend = LdapAuthenticator(settings)
    try:
        return dict(await backend.group_member_counts(groups))
    finally:
        await backend.close()
