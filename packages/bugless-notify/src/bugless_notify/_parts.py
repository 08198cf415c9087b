"""Calls split at a server's stated bound: the one way the notifier asks in parts.

The Model and the Authenticator refuse a call naming more than their bound
(:mod:`bugless_core.limits`: recipients or entries per
``GetNotificationViews``, people per ``GetUsers`` and ``LookupUsers``,
targets per ``IssueUnsubscribeTokens``). A refused call fails its batch (or
its delivery attempt) at every try and holds up all that waits behind it,
so whatever may be larger is asked about in parts of at most the bound and
the answers joined.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def in_parts(items: Sequence[T], size: int) -> list[Sequence[T]]:
    """``items`` in order, in consecutive parts of at most ``size`` (none when it is empty).

    Raises:
        ValueError: ``size`` is not positive.
    """
    if size < 1:
        raise ValueError(f"size: {size} must be at least 1")
    return [items[start : start + size] for start in range(0, len(items), size)]
