"""Waiting for a state that has no event to wait on: another process's, a counter's."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

#: How long a change may take to show by default: a few polls, or a directory's
#: or a feed's 1 s intervals, on a loaded machine (CI runs eight sessions on two
#: cores). A test that proves something does *not* happen never waits this out:
#: it is a bound on the wait for what must happen.
WITHIN_SECONDS = 15.0


async def eventually(
    check: Callable[[], bool | Awaitable[bool]],
    what: str,
    *,
    within: float = WITHIN_SECONDS,
    every: float = 0.05,
) -> None:
    """Return once ``check()`` is true, asking every ``every`` seconds.

    ``check`` may be a plain function (a counter of this process) or a
    coroutine function (a call to a server). It is asked at once, so a state
    already reached costs no sleep.

    Raises:
        AssertionError: ``check()`` was still false after ``within`` seconds;
            the message names ``what`` and the bound.
    """
    try:
        async with asyncio.timeout(within):
            while True:
                reached = check()
                if await reached if inspect.isawaitable(reached) else reached:
                    return
                await asyncio.sleep(every)
    except TimeoutError:
        raise AssertionError(f"not within {within:g} s: {what}") from None
