"""An issue's attachment list kept per issue version for its next page loads.

Every issue page lists the issue's attachments, and asking the Model for
them was a third of the page's gRPC calls. The list is a function of the
issue's version: an upload, a deletion and a redaction each append a history
entry, so any change to the list is a new version, which the page's
``GetIssue`` reports before the list is needed. So a list fetched for version
*v* is reused by the next loads of version *v*, by any reader: whoever got
the issue from ``GetIssue`` may see its attachments. A newer version is a
new key and fetches at once; nothing here delays a change.

Kept for ``timeline_cache_seconds``, like the rendered timeline of the same
version (:mod:`bugless_web.rendered_timelines`), and bounded in count; 0
fetches every time. Pages of one version loaded together share one fetch
(:meth:`KeptAttachments.get_or_fetch`): with eight connections on one issue,
each expiry was up to eight ``ListAttachments`` calls.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence

from bugless_proto import v1
from bugless_web.single_flight import SingleFlight

#: Most issues whose list is kept at once (least recently used forgotten
#: first). A list holds at most 500 attachments (the Model's limit).
KEPT_ISSUES = 512


class KeptAttachments:
    """Attachment lists by (issue id, version), each for ``ttl_seconds`` (one per web process)."""

    def __init__(self, ttl_seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        """Keep each list ``ttl_seconds`` (0: keep none)."""
        self._ttl = ttl_seconds
        self._clock = clock
        self._entries: OrderedDict[tuple[int, int], tuple[float, list[v1.Attachment]]] = (
            OrderedDict()
        )
        self._fetches: SingleFlight[tuple[int, int], list[v1.Attachment]] = SingleFlight()

    async def get_or_fetch(
        self,
        issue_id: int,
        version: int,
        fetch: Callable[[], Awaitable[Sequence[v1.Attachment]]],
    ) -> list[v1.Attachment]:
        """The list kept for ``version``, else ``fetch()``'s, kept (see :meth:`put`).

        A fetch for this version already under way is awaited instead of
        starting another. Do not modify the returned list or its messages.
        """
        kept = self.get(issue_id, version)
        if kept is not None:
            return kept

        async def fetch_and_keep() -> list[v1.Attachment]:
            found = list(await fetch())
            self.put(issue_id, version, found)
            return found

        return await self._fetches.load((issue_id, version), fetch_and_keep)

    def get(self, issue_id: int, version: int) -> list[v1.Attachment] | None:
        """The list kept for ``version`` of the issue; None when none is.

        Do not modify the returned list or its messages: later pages share them.
        """
        if self._ttl <= 0:
            return None
        kept = self._entries.get((issue_id, version))
        if kept is None or kept[0] <= self._clock():
            return None
        self._entries.move_to_end((issue_id, version))
        return kept[1]

    def put(self, issue_id: int, version: int, attachments: Sequence[v1.Attachment]) -> None:
        """Keep ``attachments`` as version ``version``'s list of the issue.

        A list that names an entry after ``version`` was read after a newer
        version was written (the issue was read first): it is not kept, since
        the newer list may already differ from version ``version``'s.
        """
        if self._ttl <= 0 or any(
            a.entry_version > version or a.deleted_in_version > version for a in attachments
        ):
            return
        self._entries[(issue_id, version)] = (self._clock() + self._ttl, list(attachments))
        self._entries.move_to_end((issue_id, version))
        while len(self._entries) > KEPT_ISSUES:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
