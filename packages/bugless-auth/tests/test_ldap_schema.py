"""The start's check of ``user_filter`` against the server's schema (real slapd).

An equality item with ``{username}`` next to other text is a substring test
for every username; on an attribute with no ``SUBSTR`` rule that matches no
entry, so the re-sync lists nobody (and refuses its rounds). The backend
reads the subschema once at start, only for such a filter, and warns.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pytest
from ldap_support import ldap_options, start_with_ldap

from bugless_auth._ldap_directory import LdapDirectory
from bugless_auth._ldap_schema import warn_of_substring_tests, without_substring_rule
from bugless_auth.ldap import LdapSettings
from bugless_testing.polling import eventually
from bugless_testing.slapd import Slapd

if TYPE_CHECKING:
    from auth_support import StartAuth

HOME = "(&(objectClass=inetOrgPerson)(homeDirectory=/home/{username}))"
_LOGGER = "bugless_auth.ldap"


async def test_the_schema_tells_which_attributes_have_no_substring_rule(
    slapd_server: Slapd,
) -> None:
    """homeDirectory and uidNumber have none; mail has one, cn through its supertype name."""
    directory = LdapDirectory(LdapSettings.from_mapping(ldap_options(slapd_server)))
    try:
        types = await directory.attribute_types()
    finally:
        await directory.close()
    asked = ["homeDirectory", "mail", "CN", "cn;lang-en", "uidNumber", "noSuchAttribute"]
    assert without_substring_rule(types, asked) == ["homeDirectory", "uidNumber"]


async def test_a_filter_whose_every_user_form_matches_nothing_is_warned_of_at_start(
    start_auth_server: StartAuth, slapd_server: Slapd, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=_LOGGER)
    await start_with_ldap(start_auth_server, ldap_options(slapd_server, user_filter=HOME))

    def warned() -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.name == _LOGGER and r.levelno == logging.WARNING
        ]

    async def said() -> bool:
        return bool(warned())

    await eventually(said, "the start's warning")
    assert warned() == [
        "ldap user_filter: its homeDirectory item is (homeDirectory=/home/*) for every "
        "username (what the re-sync and group counts search), and the server's schema gives "
        "homeDirectory no substring matching rule, so that matches no entry: the re-sync "
        "refuses its rounds and group counts find no one. Match homeDirectory by {username} "
        "alone or use an attribute with a SUBSTR rule"
    ]


@pytest.mark.parametrize(
    "user_filter",
    ["(mail={username}@bugless.test)", "(&(objectClass=inetOrgPerson)(uid={username}))"],
)
async def test_a_filter_the_server_can_match_for_every_user_is_not_warned_of(
    slapd_server: Slapd, caplog: pytest.LogCaptureFixture, user_filter: str
) -> None:
    """mail has a SUBSTR rule; a plain ``(uid={username})`` is a presence test (no read)."""
    directory = LdapDirectory(LdapSettings.from_mapping(ldap_options(slapd_server)))
    try:
        with caplog.at_level(logging.INFO, logger=_LOGGER):
            await warn_of_substring_tests(directory, user_filter)
            await warn_of_substring_tests(directory, HOME)
    finally:
        await directory.close()
    said = [r.getMessage() for r in caplog.records if r.name == _LOGGER]
    assert len(said) == 1, said  # HOME's warning only
    assert said[0].startswith("ldap user_filter: its homeDirectory item"), said
