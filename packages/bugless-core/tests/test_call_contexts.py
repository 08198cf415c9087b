"""A call's context variables when the block that set them is left in another context."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from bugless_core.clients import CURRENT_ASSERTION, acting_as, call_errors


async def _stream() -> AsyncGenerator[int]:
    """A download's shape: its chunks read inside call_errors, with an assertion set."""
    with acting_as("assertion"), call_errors("the model service stream broke"):
        yield 1
        yield 2


async def test_a_stream_closed_from_another_context_closes_without_an_error() -> None:
    """The finalizer's close of a cut stream raises nothing (it logged three tracebacks).

    A transfer cut at shutdown leaves its generator to the event loop's
    finalizer, which closes it in another context than the reader's: the
    blocks' ContextVar resets raised ValueError ("created in a different
    Context"), logged as tracebacks by the web at every cut transfer (ci87:
    test_drain_transfers). Here the close runs in a task of its own, as the
    finalizer's does.
    """
    stream = _stream()
    assert await anext(stream) == 1
    await asyncio.create_task(stream.aclose())  # another context: the task's copy


async def test_a_stream_read_to_its_end_restores_the_readers_context() -> None:
    """Left in its own context the blocks still restore what they set."""
    assert [chunk async for chunk in _stream()] == [1, 2]
    assert CURRENT_ASSERTION.get() is None
