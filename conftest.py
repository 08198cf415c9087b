"""Repository-wide pytest hooks: the event loop async tests run on.

Every bugless process runs on uvloop (:mod:`bugless_core.eventloop`), so the
async tests of every package run on it too: what they prove holds for the
loop production uses. ``BUGLESS_TEST_EVENT_LOOP=asyncio`` runs them on
asyncio's own loop instead, to tell a uvloop difference from a bug.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping

import pytest

from bugless_core.eventloop import new_event_loop

_LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "uvloop": new_event_loop,
    "asyncio": asyncio.new_event_loop,
}


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The one loop named by ``BUGLESS_TEST_EVENT_LOOP`` (default ``uvloop``)."""
    name = os.environ.get("BUGLESS_TEST_EVENT_LOOP", "uvloop")
    if name not in _LOOPS:
        raise pytest.UsageError(
            f"BUGLESS_TEST_EVENT_LOOP={name!r}: expected one of {', '.join(_LOOPS)}"
        )
    return {name: _LOOPS[name]}
