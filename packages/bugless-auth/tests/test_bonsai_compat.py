"""bonsai's DN check, widened to take a '#' inside a value (``_bonsai_compat``), on slapd."""

from __future__ import annotations

import asyncio

import bonsai
import bonsai.errors
import bonsai.ldapdn
import pytest
from auth_support import unique
from ldap_support import add_person, settings_for

from bugless_auth import _ldap_directory  # noqa: F401  # importing it widens the check
from bugless_auth._bonsai_compat import (
    ATTRIBUTE_VALUE,
    BONSAI_ATTRIBUTE_VALUE,
    allow_hash_inside_values,
)
from bugless_auth.ldap import LdapAuthenticator
from bugless_testing.slapd import GROUPS_DN, PEOPLE_DN, Slapd


def test_the_workaround_still_fits_the_installed_bonsai() -> None:
    """Fails when a bonsai upgrade changes the check: look at the workaround again.

    If the new bonsai takes ``cn=C# devs`` itself, delete _bonsai_compat;
    else write it against the new pattern.
    """
    source = bonsai.ldapdn.LDAPDN._attrvalue
    assert source == BONSAI_ATTRIBUTE_VALUE
    assert allow_hash_inside_values()
    assert ATTRIBUTE_VALUE in bonsai.ldapdn.LDAPDN._dnregex.pattern


@pytest.mark.parametrize(
    "dn", ["cn=C# devs #1,ou=g", "uid=team#1,ou=g", "cn=#0C0161,ou=g", "cn=\\#a,ou=g", "cn=a,ou=g"]
)
def test_a_hash_after_a_value_s_first_character_is_taken(dn: str) -> None:
    assert str(bonsai.LDAPDN(dn)) == dn


@pytest.mark.parametrize("dn", ["cn=#1 a,ou=g", "cn=#zz,ou=g", "cn=a,#b=c", "cn=a\\q"])
def test_a_leading_hash_that_is_no_hex_form_is_still_refused(dn: str) -> None:
    with pytest.raises(bonsai.errors.InvalidDN):
        bonsai.LDAPDN(dn)


async def test_a_person_and_a_group_named_with_a_hash_sign_in_and_are_counted(
    slapd_server: Slapd,
) -> None:
    uid = f"team#{unique('x')}"
    await add_person(slapd_server, uid, "pw")
    group = f"C# devs {uid}"
    await asyncio.to_thread(
        slapd_server.ldapadd,
        f"dn: cn={group},{GROUPS_DN}\nobjectClass: groupOfNames\ncn: {group}\n"
        f"member: uid={uid},{PEOPLE_DN}\n",
    )
    member_of = settings_for(slapd_server, group_entry_base=GROUPS_DN)
    searched = settings_for(slapd_server, group_attribute="", group_search_base=GROUPS_DN)
    for settings in (member_of, searched):
        backend = LdapAuthenticator(settings)
        try:
            identity = await backend.authenticate(uid, "pw")
            assert identity is not None
            assert (identity.username, identity.groups) == (uid, (group,))
            assert dict(await backend.group_member_counts([group])) == {group: 1}
        finally:
            await backend.close()
