"""The filter check of the LDAP settings (RFC 4515), against what libldap accepts (real slapd)."""

from __future__ import annotations

from typing import Any

import bonsai
import bonsai.errors
import pytest

from bugless_auth._ldap_filter_syntax import (
    FilterSyntaxError,
    check_filter,
    substring_tests,
    with_every_value,
)
from bugless_testing.slapd import PEOPLE_DN, READER_DN, READER_PASSWORD, Slapd

#: Filters libldap (as bonsai sends them) takes, and so must the check.
TAKEN = [
    "(uid=alice)",
    "(cn=)",
    "(uid=*)",
    "(uid=al*ce)",
    "(uid=*li*)",
    "(uid~=alice)",
    "(uidNumber>=10)",
    "(uidNumber<=10)",
    "(1.2.3=x)",
    "(uid;x-opt=alice)",
    "(uid:caseExactMatch:=alice)",
    "(uid:dn:caseExactMatch:=alice)",
    "(:dn:2.5.13.5:=x)",
    "(:dn:dn:=x)",
    "(uid:=alice)",
    "(cn=a\\29b\\28)",
    "(cn=a\\(b\\)c\\*\\\\)",
    "(cn=a=b)",
    "(cn=caf\u00e9)",
    "(!(uid=alice))",
    "(! (uid=alice))",
    "(& (objectClass=*) (uid=alice) )",
    "(&\t(objectClass=*)\n(uid=alice))",
    "( uid=alice)",
    "(|(objectClass=groupOfNames)(&(objectClass=posixGroup)(cn=a\\29b)))",
]

#: Filters libldap refuses ("Bad search filter"), and so must the check.
REFUSED = [
    " (uid=alice)",
    "(uid=alice) ",
    "(uid=alice)(uid=bob)",
    "(&(uid=alice)(uid=bob)",
    "(uid=alice))",
    "(uid=alice",
    "()",
    "(=x)",
    "(uid)",
    "(uid=a\\zz)",
    "(uid=a\\2)",
    "(uid=a(b)",
    "(uid=\0)",
    "(uid>=*)",
    "(uid~=a*)",
    "(uid:caseExactMatch:=*)",
    "(:=x)",
    "(:dn:=x)",
    "(:DN:=x)",
    "(!(uid=a)(uid=b))",
    "(!)",
    "(&(uid=a)x)",
    "(u id=a)",
    "(uid=a**b)",
    "(! (uid=a) )",
]


async def _libldap_takes(conn: Any, text: str) -> bool:
    """Whether libldap sends ``text`` (bonsai's async connection: its search is awaited)."""
    try:
        await conn.search(PEOPLE_DN, 2, text, ["1.1"])
    except bonsai.errors.LDAPError as exc:
        refusal = str(exc)
    else:
        return True
    assert "Bad search filter" in refusal
    return False


async def test_the_check_takes_what_libldap_takes_and_refuses_what_it_refuses(
    slapd_server: Slapd,
) -> None:
    client = bonsai.LDAPClient(slapd_server.url)
    client.set_credentials("SIMPLE", user=READER_DN, password=READER_PASSWORD)
    async with client.connect(is_async=True, timeout=2) as conn:
        for text in TAKEN:
            assert await _libldap_takes(conn, text), text
            check_filter(text)
        for text in REFUSED:
            assert not await _libldap_takes(conn, text), text
            with pytest.raises(FilterSyntaxError):
                check_filter(text)
        # RFC 4526's absolute true and false: slapd takes them, Active
        # Directory does not, and the check refuses them.
        for text in ("(&)", "(|)", "(&(uid=a)(|))"):
            assert await _libldap_takes(conn, text), text
            with pytest.raises(FilterSyntaxError, match="with no filter in it"):
                check_filter(text)
        # libldap puts parentheses around a filter without them (and takes
        # nothing as every entry); AND-ed with other conditions that is no
        # filter, and the check refuses them.
        for text in ("uid=alice", ""):
            assert await _libldap_takes(conn, text), text
            with pytest.raises(FilterSyntaxError, match="expected '\\(' to open a filter"):
                check_filter(text)


@pytest.mark.parametrize(
    ("text", "reason", "character"),
    [
        ("(&)", "'&' with no filter in it (for every entry: (objectClass=*))", 3),
        ("(uid=alice))", "text after the filter's closing ')'", 12),
        ("(&(uid=a)", "expected ')' to close the filter", 10),
        ("(uid>=*)", "'*' in a value of ~=, >=, <= or := (written \\2a)", 7),
        ("(uid=a\\zz)", "'\\' not followed by two hex digits", 7),
        ("(u id=a)", "'u id' is not an attribute name", 2),
        ("(=a)", "nothing is not an attribute name", 2),
        (
            "(:dn:=x)",
            "':dn' with no attribute needs a matching rule (:dn:rule:=)",
            2,
        ),
        ("(uid=a(b)", "'(' in a value (written \\28)", 7),
        ("(&(uid=a)x)", "expected ')' to close the filter", 10),
        ("(cn=a\udcff)", "a character that is not UTF-8", 6),
        ("(!" * 100 + "(a=b)" + ")" * 100, "filters nested more than 100 deep", 201),
    ],
)
def test_a_refusal_says_what_is_wrong_and_where(text: str, reason: str, character: int) -> None:
    with pytest.raises(FilterSyntaxError) as info:
        check_filter(text)
    assert (info.value.reason, info.value.position + 1) == (reason, character)
    assert str(info.value) == f"{reason} at character {character}"


def test_a_placeholder_is_a_value_and_nothing_else() -> None:
    check_filter("(&(uid={username})(cn=pre{username}*))", ("{username}",))
    check_filter("(member={dn})", ("{dn}",))
    with pytest.raises(FilterSyntaxError, match=r"'\{username\}' is not an attribute name"):
        check_filter("({username}=x)", ("{username}",))
    # Unnamed, the braces are plain characters of a value.
    check_filter("(uid={dn})")


#: Filters with {username}, and what they are for every username.
EVERY_VALUE = [
    ("(uid={username})", "(uid=*)"),
    ("(mail={username}@example.com)", "(mail=*@example.com)"),
    ("(cn=*{username}*)", "(cn=*)"),
    ("(cn=a\\2a{username}\\*b)", "(cn=a\\2a*\\*b)"),
    ("(uid={username}{username})", "(uid=*)"),
    ("(uid:caseExactMatch:={username})", "(uid=*)"),
    ("(uid:caseExactMatch:=a{username})", "(uid=*)"),
    ("(cn;lang-en:={username})", "(cn;lang-en=*)"),
    ("(uid~={username})", "(uid=*)"),
    ("(uidNumber>={username})", "(uidNumber=*)"),
    ("( uid<={username})", "(uid=*)"),
    ("(ou:dn:={username})", "(objectClass=*)"),
    ("(:dn:2.5.13.5:={username})", "(objectClass=*)"),
    ("(&(uid=a)(!(|(uid={username})(!(cn={username})))))", "(&(uid=a)(objectClass=*))"),
    (
        "(&(objectClass=inetOrgPerson)(uid:caseExactMatch:={username})(!(employeeType=x)))",
        "(&(objectClass=inetOrgPerson)(uid=*)(!(employeeType=x)))",
    ),
]


@pytest.mark.parametrize(("text", "every_user"), EVERY_VALUE)
def test_an_item_holding_the_placeholder_becomes_one_taking_every_value(
    text: str, every_user: str
) -> None:
    check_filter(text, ("{username}",))
    assert with_every_value(text, "{username}") == every_user


def test_the_equality_items_made_substring_tests_for_every_value_are_named() -> None:
    """Those match nothing on an attribute with no substring rule; the re-sync's error says so."""
    text = (
        "(&(mail={username}@example.com)(uid={username})(cn=a\\2a{username}\\*b)"
        "(sn=*{username}x)(uid:caseExactMatch:=a{username})(homeDirectory=/home/{username}))"
    )
    assert substring_tests(text, "{username}") == [
        ("mail", "(mail=*@example.com)"),
        ("cn", "(cn=a\\2a*\\*b)"),
        ("homeDirectory", "(homeDirectory=/home/*)"),
    ]


def test_every_value_of_a_filter_that_is_no_filter_is_refused() -> None:
    with pytest.raises(FilterSyntaxError, match="expected '\\)' to close the filter"):
        with_every_value("(&(uid={username})", "{username}")


async def test_libldap_takes_every_filter_made_for_every_value_and_the_items_as_sign_ins_send_them(
    slapd_server: Slapd,
) -> None:
    client = bonsai.LDAPClient(slapd_server.url)
    client.set_credentials("SIMPLE", user=READER_DN, password=READER_PASSWORD)
    async with client.connect(is_async=True, timeout=2) as conn:
        for text, every_user in EVERY_VALUE:
            assert await _libldap_takes(conn, every_user), every_user
            assert await _libldap_takes(conn, text.replace("{username}", "x")), text
