"""The event loop every bugless process runs on: uvloop.

uvloop (libuv under asyncio's API) makes the transport and protocol layers
C: an asyncpg round trip costs 2-3x less client CPU than on asyncio's own
loop (issue 23's prototype), and every service spends most of its time in
such round trips (gRPC in, gRPC or SQL out). :func:`run` replaces
``asyncio.run`` in every ``serve`` command and in the client commands;
:func:`new_event_loop` is for code that keeps a loop of its own (the
synchronous client) or hands a factory to a framework.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new uvloop event loop (not set as the current one)."""
    return uvloop.new_event_loop()


def run(main: Coroutine[Any, Any, T], *, debug: bool | None = None) -> T:
    """``asyncio.run(main)`` on a new uvloop loop, closed (with its async generators) after."""
    with asyncio.Runner(loop_factory=new_event_loop, debug=debug) as runner:
        return runner.run(main)
