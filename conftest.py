"""Repository-wide pytest hooks: the event loop tests run on, Hypothesis without timings.

Every bugless process runs on uvloop (:mod:`bugless_core.eventloop`), so the
tests of every package do too: what they prove holds for the loop production
uses. ``BUGLESS_TEST_EVENT_LOOP=asyncio`` runs them on asyncio's own loop
instead, to tell a uvloop difference from a bug.

The loop is chosen through the event loop policy rather than pytest-asyncio's
``pytest_asyncio_loop_factories`` hook: the hook parametrizes async tests
only, so a session-scoped async fixture used by both sync and async tests
would be set up twice (seen as "alice is taken" in the web tests).

Hypothesis runs with no per-example deadline and without its "too slow"
health check, in every package: both are wall-clock limits (200 ms per
example, 1 s to generate data), and a loaded CI machine outlasts them in tests
that are neither slow nor wrong (web ``test_paging`` failed with
DeadlineExceeded at 286 ms, load 23). A test that hangs still meets pytest's
and its own bounds; speed is measured in ``bench/``, not in tests.
"""

from __future__ import annotations

import asyncio
import os

import pytest
import uvloop
from hypothesis import HealthCheck, settings

settings.register_profile("bugless", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("bugless")

_POLICIES = {"uvloop": uvloop.EventLoopPolicy, "asyncio": asyncio.DefaultEventLoopPolicy}


def pytest_configure(config: pytest.Config) -> None:
    """Make new event loops (pytest-asyncio's, ``asyncio.run``'s) the chosen kind."""
    name = os.environ.get("BUGLESS_TEST_EVENT_LOOP", "uvloop")
    if name not in _POLICIES:
        raise pytest.UsageError(
            f"BUGLESS_TEST_EVENT_LOOP={name!r}: expected one of {', '.join(_POLICIES)}"
        )
    asyncio.set_event_loop_policy(_POLICIES[name]())
