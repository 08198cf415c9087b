"""Repository-wide pytest hooks: the event loop tests run on.

Every bugless process runs on uvloop (:mod:`bugless_core.eventloop`), so the
tests of every package do too: what they prove holds for the loop production
uses. ``BUGLESS_TEST_EVENT_LOOP=asyncio`` runs them on asyncio's own loop
instead, to tell a uvloop difference from a bug.

The loop is chosen through the event loop policy rather than pytest-asyncio's
``pytest_asyncio_loop_factories`` hook: the hook parametrizes async tests
only, so a session-scoped async fixture used by both sync and async tests
would be set up twice (seen as "alice is taken" in the web tests).
"""

from __future__ import annotations

import asyncio
import os

import pytest
import uvloop

_POLICIES = {"uvloop": uvloop.EventLoopPolicy, "asyncio": asyncio.DefaultEventLoopPolicy}


def pytest_configure(config: pytest.Config) -> None:
    """Make new event loops (pytest-asyncio's, ``asyncio.run``'s) the chosen kind."""
    name = os.environ.get("BUGLESS_TEST_EVENT_LOOP", "uvloop")
    if name not in _POLICIES:
        raise pytest.UsageError(
            f"BUGLESS_TEST_EVENT_LOOP={name!r}: expected one of {', '.join(_POLICIES)}"
        )
    asyncio.set_event_loop_policy(_POLICIES[name]())
