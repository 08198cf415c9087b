"""Reading one group's members from an LDAP directory, as the service account.

What :class:`~bugless_auth._ldap_group_counts.GroupCounts` caches and bounds:
how a group's entry is found by name and its members counted, in the mode
sign-ins read groups. Kept apart from :mod:`bugless_auth._ldap_directory`
(sign-ins, binds, failover), whose :meth:`~LdapDirectory.on_any_server` every
search here goes through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import bonsai
import bonsai.errors

from bugless_auth._ldap_directory import LdapDirectory, escape_filter_exp, group_name
from bugless_auth._ldap_dn import parse_dn
from bugless_auth._ldap_pool import CONNECTION_ERRORS

if TYPE_CHECKING:
    from bugless_auth.ldap import LdapSettings

_BASE = 0
_SUBTREE = 2
#: Usernames (memberUid values), or member DNs' RDNs, looked up in one search,
#: as the re-sync batches subjects: 1,000 members are 20 searches.
_NAMES_PER_SEARCH = 50

T = TypeVar("T")


def _batches(items: Sequence[T]) -> list[Sequence[T]]:
    return [items[i : i + _NAMES_PER_SEARCH] for i in range(0, len(items), _NAMES_PER_SEARCH)]


def _dn_key(dn: str) -> str:
    """``dn`` spelled one way: attribute types lower-cased, values as text, compared exactly.

    Values are read by :func:`~bugless_auth._ldap_dn.parse_dn` (escapes and
    RFC 4514's ``#`` form decoded). Two DNs of one key name one entry (the
    server's equality of values is as strict or looser), so matching keys
    never counts an entry the group does not list; a DN it cannot read is
    its own key.
    """
    rdns = parse_dn(dn)
    if rdns is None:
        return f"raw:{dn}"
    return repr(tuple(tuple(sorted((a.lower(), v) for a, v in rdn)) for rdn in rdns))


def _rdn_filter(dn: str) -> str | None:
    """A filter for the entries holding ``dn``'s RDN values (``(uid=ann)``); None if unusable.

    Only a narrowing (the caller compares the DNs of the entries found): a
    DN it cannot read is read at its entry.
    """
    rdns = parse_dn(dn)
    if not rdns:
        return None
    parts = [f"({attribute}={escape_filter_exp(value)})" for attribute, value in rdns[0]]
    return parts[0] if len(parts) == 1 else f"(&{''.join(parts)})"


#: What a group's entry must also match in memberOf mode unless
#: ``group_entry_filter`` says otherwise: the classes whose members a memberOf
#: attribute lists (OpenLDAP's memberof overlay: groupOfNames, or
#: groupOfUniqueNames when so configured; Active Directory: group), so a person
#: or another entry named as the group (``cn=eng``) is not taken for it.
MEMBER_OF_GROUP_FILTER = (
    "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=group))"
)


def group_entry_filter(settings: LdapSettings) -> str:
    """The filter a group's entry must match besides its name; empty: any entry.

    ``group_entry_filter`` when set; else :data:`MEMBER_OF_GROUP_FILTER` in
    memberOf mode, and none in group-search mode, whose directories name
    their groups' class in ``group_search_filter`` (groupOfNames,
    posixGroup, ...), which cannot be read back from it.
    """
    if settings.group_entry_filter:
        return settings.group_entry_filter
    return "" if settings.group_search_base else MEMBER_OF_GROUP_FILTER


def counting_connections(pool_size: int) -> int:
    """Service-account connections that counts use at once: half of ``pool_size``, at least 1.

    A count is a hint on an access-list form; a sign-in is a person waiting.
    Counting never holds more than half the pool (over every group being
    read, by every call), so a large group's reads leave sign-ins the rest and
    none waits ``pool_wait_seconds`` for a connection because of them. Not
    a setting of its own: a deployment that wants counts read faster raises
    ``pool_size``, which grows both halves.
    """
    return max(1, pool_size // 2)


class GroupCountUnknown(Exception):
    """The directory holds a group (or may) whose members it cannot count now; says why."""


class _PagingRefused(Exception):
    """The server refused a paged search of a query it had just answered; its message."""


#: What a paged search raises that is not a refusal of its paging.
_NOT_A_PAGING_REFUSAL: tuple[type[BaseException], ...] = (
    bonsai.errors.SizeLimitError,
    *CONNECTION_ERRORS,
)


def _normalised_rdns(dn: str) -> tuple[tuple[tuple[str, str], ...], ...] | None:
    rdns = parse_dn(dn)
    if rdns is None:
        return None
    return tuple(tuple((a.lower(), v.lower()) for a, v in rdn) for rdn in rdns)


def is_under(dn: str, base: str) -> bool:
    """Whether ``dn`` is ``base`` or below it (names compared case-insensitively)."""
    entry, ancestor = _normalised_rdns(dn), _normalised_rdns(base)
    if entry is None or ancestor is None or len(entry) < len(ancestor):
        return False
    return not ancestor or entry[-len(ancestor) :] == ancestor


class GroupReader:
    """Counts a group's members in the directory, one group per :meth:`count`."""

    def __init__(self, directory: LdapDirectory) -> None:
        self._directory = directory
        self.settings: LdapSettings = directory.settings
        self._connections = asyncio.Semaphore(counting_connections(self.settings.pool_size))

    async def count(self, group: str) -> int | None:
        """How many entries ``user_filter`` admits are members of ``group``; None: no such group.

        None too when sign-ins read no groups here (no ``group_search_base``
        and an empty ``group_attribute``), and when the entry found is named
        ``group`` only as the server compares names (``ENG`` finds ``cn=eng``):
        sign-ins record ``eng``, which an access list's ``ENG`` does not match.

        Read as the service account, in the mode sign-ins read groups:

        * group-search mode (``group_search_base`` set): the group entry named
          ``group`` under ``group_search_base``, and its
          ``group_member_attribute`` values: usernames for ``memberUid``
          (looked up in batches of :data:`_NAMES_PER_SEARCH`), else member
          DNs, found by their RDNs in batches and any other read at its own
          entry (:meth:`_count_member_entries`), with the user filter. A member
          that is gone, outside ``base_dn`` or excluded by the user filter (a
          locked account) is not counted: they could not sign in. The
          batches and reads go :func:`counting_connections` at a time.
        * memberOf mode: the group entry named ``group`` under
          ``group_entry_base`` (and :func:`group_entry_filter`: of a group
          class), then one search of ``base_dn`` for the user filter and
          ``group_attribute`` equal to its DN.

        Raises:
            GroupCountUnknown: memberOf mode without ``group_entry_base``,
                several entries named ``group``, a group entry without
                ``group_member_attribute`` (group-search mode), more
                members than ``group_count_limit``, or more than the
                directory's size limit lets the service account read.
            Unavailable: no server answered.
        """
        s = self.settings
        search_mode = bool(s.group_search_base)
        if not search_mode and not s.group_attribute:
            return None  # sign-ins read no groups from this directory: it holds none
        base = s.group_search_base or s.group_entry_base
        if not base:
            raise GroupCountUnknown(
                "group_entry_base is not set, so a group's entry cannot be found by its name"
            )
        named = f"({s.group_name_attribute}={escape_filter_exp(group)})"
        kind = group_entry_filter(s)
        if kind:
            named = f"(&{kind}{named})"
        wanted = [s.group_name_attribute]
        if search_mode:
            wanted.append(s.group_member_attribute)

        async def find_group(conn: Any) -> list[Any]:
            result: list[Any] = await conn.search(
                base, _SUBTREE, named, wanted, timeout=s.operation_timeout, sizelimit=2
            )
            return result

        try:
            url, found = await self._search(find_group)
        except bonsai.errors.SizeLimitError:
            found = [None, None]
        if len(found) > 1:
            raise GroupCountUnknown(
                f"several entries under {base} are named {group!r} and match "
                f"{kind or 'no group_entry_filter'}; a narrower group_entry_filter tells them apart"
            )
        if not found:
            return None
        # The filter matched the name as the server compares it (cn ignores
        # case); sign-ins record the entry's own name, as groups() reads it,
        # and an access list matches names exactly: another spelling of the
        # name gives nobody access, so the directory holds no group so named.
        if search_mode:
            own_name = str((found[0].get(s.group_name_attribute) or [""])[0])
        else:
            own_name = group_name(str(found[0]["dn"]), s.group_name_attribute)
        if own_name != group:
            return None
        if not search_mode:
            return await self._count_users(
                f"({s.group_attribute}={escape_filter_exp(str(found[0]['dn']))})", url
            )
        listed = found[0].get(s.group_member_attribute)
        if not listed:
            # Not "nobody": the attribute may be one this directory's groups do
            # not use (uniqueMember set, groupOfNames entries), or one the
            # service account may not read; either way the members are unseen.
            raise GroupCountUnknown(
                f"the entry of {group!r} has no {s.group_member_attribute} the service "
                "account can read; check group_member_attribute and its read access"
            )
        values = [str(v) for v in listed]
        if len(values) > s.group_count_limit:
            raise GroupCountUnknown(
                f"{group!r} lists {len(values)} members, more than group_count_limit "
                f"({s.group_count_limit})"
            )
        if s.group_member_attribute.lower() == "memberuid":
            # memberUid compares exactly and uid ignores case: "ann" and "ANN"
            # are two values naming one person, maybe in two batches, so the
            # entries found are counted, not the batches' sums.
            names = list(dict.fromkeys(values))
            members: set[str] = set()

            async def look_up(batch: Sequence[str]) -> None:
                any_of = "".join(f"({s.username_attribute}={escape_filter_exp(v)})" for v in batch)
                members.update(await self._matching_users(f"(|{any_of})", url))

            await self._each_in_turn(_batches(names), look_up)
            return len(members)
        return await self._count_member_entries(
            [v for v in dict.fromkeys(values) if is_under(v, s.base_dn)], url
        )

    async def _count_users(self, condition: str, url: str) -> int:
        """Entries under ``base_dn`` the user filter admits that also match ``condition``."""
        return len(await self._matching_users(condition, url))

    async def _matching_users(self, condition: str, url: str) -> set[str]:
        """DNs of the entries :meth:`_count_users` counts, as the server spells them.

        One search with a size limit of ``group_count_limit`` + 1: more than
        the limit is known by having read them. A size-limit error there is
        either limit, the search's or the server's for the bind account
        (slapd's default for an account other than the rootdn is 500
        entries; Active Directory's MaxPageSize, 1,000), and bonsai keeps no
        entries of a search that ends in it, so :meth:`_read_paged` reads them
        again in pages to tell which, and counts them when paging lets the
        account read past its limit.

        Raises:
            GroupCountUnknown: more than ``group_count_limit`` of them, or
                more than the directory's size limit lets the bind account
                read (or one of the two, where the server refuses the paging
                that would tell).
        """
        s = self.settings
        query = f"(&{s.every_user_filter}{condition})"
        limit = s.group_count_limit

        async def search(conn: Any) -> list[Any]:
            result: list[Any] = await conn.search(
                s.base_dn,
                _SUBTREE,
                query,
                ["1.1"],
                timeout=s.operation_timeout,
                sizelimit=limit + 1,
            )
            return result

        try:
            _, entries = await self._search(search, prefer=url)
        except bonsai.errors.SizeLimitError:
            entries = await self._read_paged(query, url)
        if len(entries) > limit:
            raise GroupCountUnknown(f"more members than group_count_limit ({limit})")
        return {str(e["dn"]) for e in entries}

    async def _read_paged(self, query: str, url: str) -> list[Any]:
        """The entries of ``query`` as a paged search (RFC 2696), at most ``group_count_limit`` + 1.

        Pages of ``group_count_limit`` + 1 entries, read until more than the
        limit are in, and no size limit of the client's own: a size-limit
        error can only be the server's for paged searches (slapd's
        ``size.prtotal``, by default its ``size.hard``), which stopped it
        before ``group_count_limit`` + 1 entries.

        A search stopped before its last page leaves the server's paging
        state on the connection (Active Directory keeps a few such result
        sets per connection, MaxResultSetsPerConn, and refuses more). RFC
        2696 ends one with a request of page size 0 and the cookie, which
        bonsai cannot send: it adds the paging control only while the page
        size it keeps (in C, with the cookie, neither readable nor settable)
        is above 0, and ``acquire_next_page`` resends that size. So the
        connection is closed instead, which ends the state on any server,
        and the pool opens another for the next search.

        Raises:
            GroupCountUnknown: the server's size limit stopped the search, or
                the server refused the paging (slapd's ``size.pr`` below the
                page size: adminLimitExceeded), so the limit that stopped the
                plain search cannot be told.
        """
        s = self.settings
        limit = s.group_count_limit
        account = s.bind_dn or "(anonymous)"

        async def search(conn: Any) -> list[Any]:
            entries: list[Any] = []
            try:
                page = await conn.paged_search(
                    s.base_dn,
                    _SUBTREE,
                    query,
                    ["1.1"],
                    timeout=s.operation_timeout,
                    page_size=limit + 1,
                )
                while True:
                    entries.extend(page)
                    if len(entries) > limit:
                        conn.close()  # its paging state goes with it (see above)
                        return entries
                    message_id = page.acquire_next_page()
                    if message_id is None:
                        return entries
                    page = await conn.get_result(message_id, timeout=s.operation_timeout)
            except _NOT_A_PAGING_REFUSAL:
                raise
            except bonsai.errors.LDAPError as exc:
                # The same query was just searched: the control is what it refused.
                raise _PagingRefused(str(exc)) from exc

        try:
            _, entries = await self._search(search, prefer=url)
        except bonsai.errors.SizeLimitError:
            raise GroupCountUnknown(
                "more members than the directory's size limit for the bind account "
                f"{account} lets it read, a limit no higher than group_count_limit ({limit}); "
                "raise that account's limit in the directory (OpenLDAP: a limits entry with "
                "size.prtotal for paged searches)"
            ) from None
        except _PagingRefused as refused:
            raise GroupCountUnknown(
                f"more members than group_count_limit ({limit}) or than the directory's size "
                f"limit for the bind account {account} lets it read in one search; the paged "
                f"search that would tell which was refused ({refused})"
            ) from None
        return entries

    async def _count_member_entries(self, dns: list[str], url: str) -> int:
        """How many of ``dns`` are entries the user filter admits.

        Found by their RDNs first: a search of ``base_dn`` for the user filter
        and an OR of :data:`_NAMES_PER_SEARCH` DNs' RDNs (``uid=ann``) finds
        the candidates, and a member counts when an entry found is named by
        its DN (:func:`_dn_key`: escapes and the case of attribute types
        aside, exactly). A filter cannot say "this DN", so the RDNs only
        narrow the search (``uid=ann`` in two OUs is two entries; one is the
        member), and a DN no entry found is so named (a locked or deleted
        member, or a value in another case: ``ou=PEOPLE``) is then read at
        its own entry, where the server resolves the name by its own rules.
        Each read is a round trip: 1,000 members read one at a time took 13
        to 17 s with slapd 5 ms away (a loaded 2-core machine), so the view
        said "not counted"; found 50 to a search, 20 searches on
        :func:`counting_connections` connections at once, 1.2 to 1.4 s.
        """
        s = self.settings
        admitted: set[str] = set()
        unresolved: list[str] = []
        named: list[tuple[str, str]] = []
        for dn in dns:
            rdn = _rdn_filter(dn)
            if rdn is None:
                unresolved.append(dn)
            else:
                named.append((dn, rdn))

        async def find(batch: Sequence[tuple[str, str]]) -> None:
            any_of = "".join(dict.fromkeys(rdn for _, rdn in batch))
            found = {_dn_key(dn) for dn in await self._matching_users(f"(|{any_of})", url)}
            for dn, _ in batch:
                if (key := _dn_key(dn)) in found:
                    admitted.add(key)
                else:
                    unresolved.append(dn)

        await self._each_in_turn(_batches(named), find)
        query = s.every_user_filter

        async def read(dn: str) -> None:
            async def search(conn: Any) -> list[Any]:
                try:
                    result: list[Any] = await conn.search(
                        dn, _BASE, query, ["1.1"], timeout=s.operation_timeout
                    )
                except (bonsai.errors.NoSuchObjectError, bonsai.errors.InvalidDN):
                    return []
                return result

            _, entries = await self._search(search, prefer=url)
            admitted.update(_dn_key(str(e["dn"])) for e in entries)

        await self._each_in_turn(unresolved, read)
        return len(admitted)

    async def _each_in_turn(self, items: Sequence[T], work: Callable[[T], Awaitable[None]]) -> None:
        """``work`` on every item, by :func:`counting_connections` workers taking items in turn.

        Each search holds a connection only while it runs (:meth:`_search`),
        so other groups' searches interleave with a large group's. The first
        worker that fails ends the others, and its exception is raised.
        """
        queue = iter(items)

        async def take_in_turn() -> None:
            for item in queue:  # shared: each worker takes the next item
                await work(item)

        workers = [
            asyncio.create_task(take_in_turn())
            for _ in range(min(len(items), counting_connections(self.settings.pool_size)))
        ]
        try:
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _search(
        self, operation: Callable[[Any], Awaitable[list[Any]]], *, prefer: str | None = None
    ) -> tuple[str, list[Any]]:
        """:meth:`LdapDirectory.on_any_server`, on one of the counts' connections."""
        async with self._connections:
            return await self._directory.on_any_server(operation, prefer=prefer)
