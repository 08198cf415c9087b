"""Counting an LDAP directory's group members for CountGroupMembers, cached and bounded.

The web's access-list form asks for the counts of a component's groups on
every view, so a count read from the directory is kept for
``group_count_seconds`` (per replica) and one read of a group serves every
call that wants it meanwhile. A call reads at most
:data:`MAX_GROUPS_READ_PER_CALL` groups that are not cached, none while
:data:`MAX_READS_PENDING` reads are still going on, and waits for them at
most ``operation_timeout``: what is not read by then is "unknown" in the
answer, never an error, and a read that goes on finishing is cached for the
next view. The reads themselves (:class:`~bugless_auth._ldap_group_reads.GroupReader`)
share :func:`~bugless_auth._ldap_group_reads.counting_connections` (half the
pool: sign-ins keep the rest). Kept apart from :mod:`bugless_auth.ldap` because
it needs bonsai (through :mod:`bugless_auth._ldap_group_reads`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from bugless_auth._ldap_group_reads import GroupCountUnknown, GroupReader

if TYPE_CHECKING:
    from bugless_auth._ldap_directory import LdapDirectory
    from bugless_auth.ldap import LdapSettings

_log = logging.getLogger("bugless_auth.ldap")

#: Groups not cached that one call reads from the directory; the rest are
#: "unknown" in its answer. An access list names a handful of groups; a list of
#: more is read 20 a view (the next view answers these from the cache and reads
#: the next 20), so one view cannot queue reads of hundreds of names, an admin's
#: input, ahead of every other view's. Not a setting: what a deployment would
#: tune is how long a view waits (``operation_timeout``) or how many
#: connections count (``pool_size``), and both are.
MAX_GROUPS_READ_PER_CALL = 20

#: Reads going on at once, over all calls: a read outlives the call that
#: started it (its count is cached for the next view), so without a bound
#: views of access lists of many groups, while the directory is slow, queue
#: reads without end; past it a group not cached is "unknown" at once.
MAX_READS_PENDING = 2 * MAX_GROUPS_READ_PER_CALL

#: Groups whose counts are kept; past it, expired ones are dropped (names are
#: an admin's input: any number of them could be asked for).
MAX_CACHED_GROUPS = 10_000

#: What reading a group gave: its count, None when the directory holds no
#: group of that name, or why it could not be counted.
Outcome = int | None | GroupCountUnknown


class GroupCounts:
    """Counts of directory groups, each read once per ``group_count_seconds``."""

    def __init__(self, directory: LdapDirectory, settings: LdapSettings) -> None:
        self._reader = GroupReader(directory)
        self._settings = settings
        self._cached: dict[str, tuple[float, Outcome]] = {}
        self._reading: dict[str, asyncio.Task[Outcome]] = {}

    async def close(self) -> None:
        """Cancel the reads still going on."""
        tasks = list(self._reading.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def counts(self, groups: Sequence[str]) -> Mapping[str, int | None]:
        """Members the directory has in each group: absent, it holds none so named; None, unknown.

        Unknown: the count could not be read in time (the directory is down
        or slow, or the call had more groups to read than
        :data:`MAX_GROUPS_READ_PER_CALL`, or :data:`MAX_READS_PENDING` reads
        of earlier calls are still going on), or cannot be read at all
        (:class:`GroupCountUnknown`: no ``group_entry_base`` in memberOf
        mode, more members than ``group_count_limit`` or than the
        directory's size limit lets the service account read).
        """
        now = time.monotonic()
        outcomes: dict[str, Outcome] = {}
        waiting: dict[str, asyncio.Task[Outcome]] = {}
        for group in dict.fromkeys(groups):
            cached = self._cached.get(group)
            if cached is not None and now - cached[0] < self._settings.group_count_seconds:
                outcomes[group] = cached[1]
            elif group in self._reading:
                waiting[group] = self._reading[group]
            elif len(self._reading) >= MAX_READS_PENDING:
                outcomes[group] = GroupCountUnknown("the directory is still reading other groups")
            elif len(waiting) < MAX_GROUPS_READ_PER_CALL:
                waiting[group] = self._start(group)
            else:
                outcomes[group] = GroupCountUnknown("too many groups to read in one call")
        if waiting:
            await asyncio.wait(waiting.values(), timeout=self._settings.operation_timeout)
        for group, task in waiting.items():
            if task.done() and not task.cancelled() and task.exception() is None:
                outcomes[group] = task.result()
            else:
                outcomes[group] = GroupCountUnknown("the directory did not answer in time")
        return {
            group: None if isinstance(outcome, GroupCountUnknown) else outcome
            for group, outcome in outcomes.items()
            if outcome is not None
        }

    def _start(self, group: str) -> asyncio.Task[Outcome]:
        task = asyncio.create_task(self._read(group), name=f"ldap group count {group}")
        self._reading[group] = task

        def finished(done: asyncio.Task[Outcome]) -> None:
            self._reading.pop(group, None)
            if done.cancelled():
                return
            if (exc := done.exception()) is not None:
                # Not cached: the next view asks again (the breakers keep a
                # dead server from being waited on each time).
                _log.info("ldap group %r not counted: %s", group, exc)
                return
            now = time.monotonic()
            if len(self._cached) >= MAX_CACHED_GROUPS:
                ttl = self._settings.group_count_seconds
                self._cached = {g: c for g, c in self._cached.items() if now - c[0] < ttl}
            if len(self._cached) < MAX_CACHED_GROUPS:
                self._cached[group] = (now, done.result())

        task.add_done_callback(finished)
        return task

    async def _read(self, group: str) -> Outcome:
        try:
            return await self._reader.count(group)
        except GroupCountUnknown as unknown:
            _log.info("ldap group %r not counted: %s", group, unknown)
            return unknown
