"""An issue's timeline rendered once and reused by its next page loads.

The timeline (every history entry, changes, comments as Markdown, the edit
and redact forms) is most of an issue page's rendering. It changes only when
the issue does (every edit, comment, redaction or attachment is a new issue
version) or when who reads it does: the edit forms show on the reader's own
comments and the redact forms to those who administer the component. So the
HTML is kept per (issue, version, reader, may-redact, build) for
``timeline_cache_seconds`` (a renamed person or component shows that late,
like the people and component caches), and the reader's CSRF token, the one
per-session part, is put in on the way out.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

from markupsafe import Markup

#: Most rendered timelines kept at once (least recently used forgotten first).
TIMELINE_CACHE_SIZE = 256
#: Most characters of rendered HTML kept at once, whatever the count: a long
#: issue's timeline runs to hundreds of KiB, and 256 of them would be more
#: than the web tier's whole memory budget (100 MB per process, issue 17).
TIMELINE_CACHE_CHARS = 16 * 1024 * 1024

#: (issue id, issue version the forms are made against, newest history entry,
#: reader's user id, may redact, asset build id).
TimelineKey = tuple[int, int, int, str, bool, str]


class RenderedTimelines:
    """A bounded, short-lived cache of rendered timelines (one per web process)."""

    def __init__(self, ttl_seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        """Keep each timeline ``ttl_seconds`` (0: render every time)."""
        self._ttl = ttl_seconds
        self._clock = clock
        self._entries: OrderedDict[TimelineKey, tuple[float, str]] = OrderedDict()
        self._chars = 0
        #: Stands for the CSRF token in the kept HTML; never a real token.
        self.placeholder = f"csrf-placeholder-{secrets.token_hex(16)}"

    def get(self, key: TimelineKey, csrf_token: str) -> Markup | None:
        """The kept timeline for ``key`` with ``csrf_token`` in its forms; None if none is."""
        if self._ttl <= 0:
            return None
        cached = self._entries.get(key)
        if cached is None or cached[0] <= self._clock():
            return None
        self._entries.move_to_end(key)
        return Markup(cached[1].replace(self.placeholder, csrf_token))

    def get_or_render(
        self, key: TimelineKey, csrf_token: str, render: Callable[[str], str]
    ) -> Markup:
        """The timeline for ``key`` with ``csrf_token`` in its forms.

        ``render(token)`` renders it afresh with ``token`` as the CSRF token;
        it is called with the placeholder when the HTML is to be kept.
        """
        if self._ttl <= 0:
            return Markup(render(csrf_token))
        now = self._clock()
        cached = self._entries.get(key)
        if cached is None or cached[0] <= now:
            if cached is not None:
                self._chars -= len(cached[1])
            cached = (now + self._ttl, render(self.placeholder))
            self._entries[key] = cached
            self._chars += len(cached[1])
        self._entries.move_to_end(key)
        html = cached[1]
        while len(self._entries) > TIMELINE_CACHE_SIZE or (
            self._chars > TIMELINE_CACHE_CHARS and len(self._entries) > 1
        ):
            _, (_, forgotten) = self._entries.popitem(last=False)
            self._chars -= len(forgotten)
        return Markup(html.replace(self.placeholder, csrf_token))

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def chars(self) -> int:
        """Characters of HTML kept now (bounded by :data:`TIMELINE_CACHE_CHARS`)."""
        return self._chars
