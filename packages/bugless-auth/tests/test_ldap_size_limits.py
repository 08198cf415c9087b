"""Group counts against a directory's own size limits: which limit stopped a count, said (slapd).

A count reads at most ``group_count_limit`` + 1 people in one search; the
directory may stop it first (slapd's default for an account other than the
rootdn is 500 entries). Each test runs a slapd of its own whose reader has
the size limits under test (slapd.conf ``limits``), with a group of two open
members and one of five.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
import trustme
from ldap_support import Team, add_person, counts, seed_team, settings_for

from bugless_auth.ldap import LdapAuthenticator, LdapSettings
from bugless_testing.polling import eventually
from bugless_testing.slapd import GROUPS_DN, PEOPLE_DN, READER_DN, Slapd, new_slapd, seed

if TYPE_CHECKING:
    from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Limited:
    """A directory whose reader has size limits, a group of 2 open members and one of 5."""

    server: Slapd
    small: Team
    big: Team

    def settings(self, group_count_limit: int) -> LdapSettings:
        """Counting in memberOf mode with ``group_count_limit``."""
        return settings_for(
            self.server, group_entry_base=GROUPS_DN, group_count_limit=group_count_limit
        )


@contextlib.asynccontextmanager
async def limited(
    root: Path, limits: str, *, log_operations: bool = False
) -> AsyncIterator[Limited]:
    """A started, seeded slapd in ``root`` whose reader has ``limits`` (slapd.conf syntax)."""
    overlay = "overlay memberof\nmemberof-refint TRUE\n"
    server = new_slapd(
        root,
        trustme.CA(),
        log_operations=log_operations,
        database=f'{overlay}limits dn.exact="{READER_DN}" {limits}\n',
    )
    try:
        server.start()
        seed(server)
        small, big = await seed_team(server), await seed_team(server)
        joined = [f"{big.tag}-{n}" for n in range(3)]
        for uid in joined:
            await add_person(server, uid, uid)
        await asyncio.to_thread(
            server.ldapmodify,
            f"dn: cn={big.group},{GROUPS_DN}\nchangetype: modify\nadd: member\n"
            + "".join(f"member: uid={uid},{PEOPLE_DN}\n" for uid in joined),
        )
        yield Limited(server, small, big)
    finally:
        server.close()


def said_of(caplog: pytest.LogCaptureFixture, group: str) -> list[str]:
    """Why ``group`` was not counted, as the backend logged it, in order."""
    return [r.getMessage() for r in caplog.records if f"{group!r} not counted" in r.getMessage()]


async def test_the_directory_s_own_size_limit_is_named_not_group_count_limit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with limited(tmp_path, "size=3") as directory:
        big = directory.big.group
        with caplog.at_level(logging.INFO, logger="bugless_auth.ldap"):
            # Two open members fit the reader's 3; five do not, and neither
            # group_count_limit (1000, 4) is what stopped the search.
            assert await counts(directory.settings(1000), directory.small.group, big) == {
                directory.small.group: 2,
                big: None,
            }
            assert await counts(directory.settings(4), big) == {big: None}
            # Three read, more than group_count_limit 2: that limit is named.
            assert await counts(directory.settings(2), big) == {big: None}
    said = said_of(caplog, big)
    assert len(said) == 3, said
    for message in said[:2]:
        assert f"the directory's size limit for the bind account {READER_DN}" in message
        assert "more members than group_count_limit" not in message
    assert said[2].endswith("more members than group_count_limit (2)")


async def test_paging_past_the_directory_s_size_limit_counts_the_group(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Searches stop at 3, paged searches do not (as Active Directory's
    # MaxPageSize limits plain searches only).
    async with limited(tmp_path, "size=3 size.prtotal=unlimited") as directory:
        big = directory.big.group
        with caplog.at_level(logging.INFO, logger="bugless_auth.ldap"):
            assert await counts(directory.settings(1000), big) == {big: 5}
            assert await counts(directory.settings(4), big) == {big: None}
    assert said_of(caplog, big) == [
        f"ldap group {big!r} not counted: more members than group_count_limit (4)"
    ]


async def test_a_directory_refusing_the_paging_leaves_both_limits_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Pages of at most 2: the count's page of group_count_limit + 1 is refused.
    async with limited(tmp_path, "size=3 size.pr=2 size.prtotal=unlimited") as directory:
        big = directory.big.group
        with caplog.at_level(logging.INFO, logger="bugless_auth.ldap"):
            assert await counts(directory.settings(1000), directory.small.group, big) == {
                directory.small.group: 2,
                big: None,
            }
    (message,) = said_of(caplog, big)
    assert message.startswith(
        f"ldap group {big!r} not counted: more members than group_count_limit (1000) or than "
        f"the directory's size limit for the bind account {READER_DN} lets it read in one "
        "search; the paged search that would tell which was refused ("
    )
    assert "Administrative limit exceeded" in message


async def test_a_paged_read_stopped_past_the_limit_ends_its_connection_and_the_paging_with_it(
    tmp_path: Path,
) -> None:
    """The server's paging state of a search left after a page is not kept open.

    Five members, pages of 5 with group_count_limit 4: the first page is
    enough, and the search is left with more to read on the server's side
    (Active Directory refuses more than MaxResultSetsPerConn such searches
    on a connection). RFC 2696's abandon (page size 0 and the cookie) is not
    one bonsai can send, so the connection is closed, and the next count
    opens another.
    """
    async with limited(tmp_path, "size=3 size.prtotal=unlimited", log_operations=True) as directory:
        big, small = directory.big.group, directory.small.group
        backend = LdapAuthenticator(directory.settings(4))
        try:
            assert dict(await backend.group_member_counts([big])) == {big: None}
            log = directory.server.root / "slapd.log"
            searches = re.findall(
                r"conn=(\d+) op=\d+ SRCH base=.*filter=\"[^\"]*memberof=",
                log.read_text(errors="replace"),
                re.IGNORECASE,
            )
            assert len(searches) == 2, directory.server.log  # the plain search, then the paged
            paged = searches[-1]
            closed = re.compile(rf"conn={paged} fd=\d+ closed")

            async def its_connection_closed() -> bool:
                return bool(closed.search(log.read_text(errors="replace")))

            await eventually(its_connection_closed, "the paged search's connection closed")
            # The pool keeps no closed connection: the next count reads as before.
            assert dict(await backend.group_member_counts([small])) == {small: 2}
        finally:
            await backend.close()
