"""What the Authenticator's LDAP tests share: its options, a server on them, directory changes.

The sign-in tests of ``test_ldap_oidc_service``, the group counts and the
resync of people a directory changed all start their Authenticators and
change slapd's entries the same way.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import bonsai

from bugless_proto import v1
from bugless_testing.slapd import (
    ADMIN_DN,
    ADMIN_PASSWORD,
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
