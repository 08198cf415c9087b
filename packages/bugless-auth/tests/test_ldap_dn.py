"""Reading DNs as text (RFC 4514): what a member DN and a group's DN hold."""

from __future__ import annotations

import pytest

from bugless_auth._ldap_directory import group_name
from bugless_auth._ldap_dn import parse_dn


@pytest.mark.parametrize(
    ("dn", "rdns"),
    [
        ("uid=ann,ou=people,dc=x", ((("uid", "ann"),), (("ou", "people"),), (("dc", "x"),))),
        ("cn=Doe\\, Ann,dc=x", ((("cn", "Doe, Ann"),), (("dc", "x"),))),
        ("cn=Doe\\2C Ann,dc=x", ((("cn", "Doe, Ann"),), (("dc", "x"),))),
        ("cn=caf\\C3\\A9,dc=x", ((("cn", "café"),), (("dc", "x"),))),
        ("cn=café,dc=x", ((("cn", "café"),), (("dc", "x"),))),
        # '#' and '=' need no escape inside a value; a leading '#' is the hex form.
        ("cn=C# devs #1,dc=x", ((("cn", "C# devs #1"),), (("dc", "x"),))),
        ("cn=a=b,dc=x", ((("cn", "a=b"),), (("dc", "x"),))),
        ("cn=\\#1,dc=x", ((("cn", "#1"),), (("dc", "x"),))),
        ("cn=#0C03616E6E,dc=x", ((("cn", "ann"),), (("dc", "x"),))),
        ("uid=ann+cn=Ann A,dc=x", ((("uid", "ann"), ("cn", "Ann A")), (("dc", "x"),))),
        # Spaces around separators (LDAPv2 spelling) go; escaped ones stay.
        ("uid=ann,  ou=people , dc=x", ((("uid", "ann"),), (("ou", "people"),), (("dc", "x"),))),
        ("cn=\\ a\\ ,dc=x", ((("cn", " a "),), (("dc", "x"),))),
        ("cn=a;dc=x", ((("cn", "a"),), (("dc", "x"),))),
        ("2.5.4.3=a", ((("2.5.4.3", "a"),),)),
        ("cn=", ((("cn", ""),),)),
        ("", ()),
    ],
)
def test_a_dn_is_read_into_its_rdns_with_values_as_text(
    dn: str, rdns: tuple[tuple[tuple[str, str], ...], ...]
) -> None:
    assert parse_dn(dn) == rdns


@pytest.mark.parametrize(
    "dn",
    [
        "ann",  # no '='
        "u id=ann",
        "=ann",
        "cn=a\\zz",  # an escape of nothing escapable
        "cn=a\\C3",  # a byte that is not UTF-8 alone
        "cn=#0201FF",  # an INTEGER: no text
        "cn=#0C03616E6E x",  # text after a hex form
        "cn=a\0b",
        "cn=a,",  # an empty RDN
    ],
)
def test_what_is_no_dn_reads_as_none(dn: str) -> None:
    assert parse_dn(dn) is None


def test_a_group_s_name_is_its_rdn_value_as_text() -> None:
    assert group_name("cn=Sales\\2C EMEA\\2BR&D,ou=groups,dc=x", "cn") == "Sales, EMEA+R&D"
    assert group_name("cn=C# devs,ou=groups,dc=x", "cn") == "C# devs"
    assert group_name("ou=x+cn=eng,dc=x", "CN") == "eng"
    # Without the name attribute, the first value; unreadable, the whole DN.
    assert group_name("ou=eng,dc=x", "cn") == "eng"
    assert group_name("not a dn", "cn") == "not a dn"
