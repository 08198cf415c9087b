"""The access-list form counts an LDAP group from the directory, and says when it cannot.

The real stack plus one more ``bugless auth serve`` with the ``local`` and
``ldap`` backends on a real slapd, finding groups by name under
``ou=groups`` and counting at most one member (``group_count_limit``), so a
group of two cannot be counted; the web app runs in-process on it. None of
the directory's people ever signs in: before, the form said "nobody" of
their groups and warned that the entry gave no one access.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from web_support import SESSION_KEY, World, create_component, sign_in, version_of

from bugless_dev.stack import RunningService
from bugless_testing.slapd import GROUPS_DN, PEOPLE_DN, READER_DN, READER_PASSWORD, Slapd
from bugless_web import WebSettings, create_app


@pytest.fixture(scope="module")
def ldap_auth(world: World, slapd_server: Slapd) -> Iterator[RunningService]:
    """An Authenticator whose ldap backend counts groups found under ``ou=groups``."""
    extra = world.stack.start_auth(
        name="auth-ldap-groups",
        authenticators=("local", "ldap"),
        options={
            "ldap": {
                "urls": slapd_server.url,
                "base_dn": PEOPLE_DN,
                "bind_dn": READER_DN,
                "bind_password": READER_PASSWORD,
                "group_entry_base": GROUPS_DN,
                "group_count_limit": "1",
                "connect_timeout": "2",
                "operation_timeout": "2",
            }
        },
    )
    try:
        yield extra
    finally:
        world.stack.stop_service(extra)


@pytest.fixture
async def client(
    world: World, ldap_auth: RunningService
) -> AsyncIterator[AsyncTestClient[Litestar]]:
    assert ldap_auth.address is not None
    settings = WebSettings(
        model=world.stack.model,
        auth=ldap_auth.address,
        session_keys=(SESSION_KEY,),
        dev=True,
    )
    async with AsyncTestClient(create_app(settings), base_url="http://testserver.local") as c:
        yield c


async def seed_groups(server: Slapd, tag: str) -> tuple[str, str, str]:
    """A group of one person and two groups of two, none of whom has signed in."""
    people = [f"{tag}-p{i}" for i in range(3)]
    entries = [
        f"dn: uid={uid},{PEOPLE_DN}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}"
        for uid in people
    ]
    one, two, pair = f"{tag}-one", f"{tag}-two", f"{tag}-pair"
    for group, members in ((one, people[:1]), (two, people[1:]), (pair, people[1:])):
        lines = "\n".join(f"member: uid={uid},{PEOPLE_DN}" for uid in members)
        entries.append(
            f"dn: cn={group},{GROUPS_DN}\nobjectClass: groupOfNames\ncn: {group}\n{lines}"
        )
    await asyncio.to_thread(server.ldapadd, "\n\n".join(entries) + "\n")
    return one, two, pair


async def test_directory_groups_are_counted_or_said_not_counted_and_only_a_typo_warned_of(
    client: AsyncTestClient[Any], dora: str, world: World, slapd_server: Slapd
) -> None:
    tag = f"wg{secrets.token_hex(3)}"
    one, two, pair = await seed_groups(slapd_server, tag)
    typo = f"{tag}-onr"
    # Counted (not guessed) where the directory could not count: a local
    # user in the group of two is who the store knows of it.
    world.stack.add_user(f"{tag}-lou", "lou-password-1", groups=[two])
    token = await sign_in(client, dora)
    component_id = await create_component(client, token, f"Directory groups {tag}")
    page = await client.get(f"/components/{component_id}")
    principals = [f"userid:{world.users['dora']}"]
    for group in (one, two, pair, typo):
        await client.post(
            f"/components/{component_id}/acl",
            data={
                "_csrf": token,
                "version": version_of(page.text),
                "principal": principals,
                "role": ["admin"] + ["editor"] * (len(principals) - 1),
                "new_kind": "group",
                "new_name": group,
                "new_role": "editor",
            },
        )
        principals.append(f"group:{group}")
        page = await client.get(f"/components/{component_id}")

    row = r'group <code>([^<]+)</code> <span class="muted group-members">· ([^<]+)<'
    counts = dict(re.findall(row, page.text))
    # One member who never signed in is counted; two are more than the
    # directory may count here (group_count_limit 1), which is said, with the
    # local member the store knows, and not as "nobody".
    assert counts == {
        one: "1 person",
        two: "at least 1 person, the directory's members not counted",
        pair: "members not counted",
        typo: "nobody",
    }, counts
    warning = re.search(r'<p class="banner warn acl-empty-groups"[^>]*>(.*?)</p>', page.text)
    assert warning, page.text
    assert warning.group(1).startswith(f"Nobody is in group <code>{typo}</code>: its entry gives")
    assert "an LDAP group is counted from the directory" in warning.group(1)
