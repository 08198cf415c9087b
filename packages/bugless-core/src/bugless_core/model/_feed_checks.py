"""Shape checks of the calls issue 16 adds: the change feed.

Kept beside :mod:`._validation` (whose helpers they use); the servicer calls
them before the backend sees a request.
"""

from __future__ import annotations

from bugless_core.model._validation import _fail, require_caller
from bugless_proto import v1

#: ReadFeed: most changes per answer, longest wait for a commit.
MAX_FEED_BATCH = 1000
MAX_FEED_WAIT_MS = 30_000


def check_read_feed(request: v1.ReadFeedRequest) -> None:
    """ReadFeed: a position at or after 0, a bounded batch and wait."""
    require_caller(request.caller)
    if request.after_position < 0:
        raise _fail("after_position", "must be 0 (the feed's start) or a position read before")
    if not 0 <= request.max_changes <= MAX_FEED_BATCH:
        raise _fail("max_changes", f"must be between 1 and {MAX_FEED_BATCH} (0: 100)")
    if not 0 <= request.wait_ms <= MAX_FEED_WAIT_MS:
        raise _fail("wait_ms", f"must be between 0 and {MAX_FEED_WAIT_MS} milliseconds")
