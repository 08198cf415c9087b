"""The notifier's loops, watched: one that ends on its own takes the process down.

The change-feed consumer, the delivery worker and the digests run until the
notifier is told to stop. If one of them ends before that (an error it did
not expect: session 8 found one in the worker), the process must not go on
answering health checks SERVING while nothing is delivered. It drains (NOT
SERVING first, so the orchestrator stops routing to it), closes and exits
with an error; the orchestrator restarts it, and the queue's leases hand what
this replica held to the next one, so no delivery is lost.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Mapping

from bugless_core.grpc import GrpcServiceRunner

_log = logging.getLogger("bugless.notify")


class LoopEnded(RuntimeError):
    """A loop of the notifier ended before the notifier was told to stop."""


async def serve_supervised(
    runner: GrpcServiceRunner, loops: Mapping[str, asyncio.Future[None]]
) -> int:
    """Serve until SIGTERM/SIGINT, or until one of ``loops`` ends on its own.

    Args:
        runner: The notifier's gRPC server (health, metrics, its service).
        loops: The loops by the name the error gives them.

    Returns:
        The process's exit status (:meth:`GrpcServiceRunner.serve_until_signalled`).

    Raises:
        LoopEnded: A loop ended first (its exception, if any, is the cause);
            the server has drained and closed by then.
    """
    ended: list[tuple[str, asyncio.Future[None]]] = []
    draining: set[asyncio.Future[None]] = set()
    serving = asyncio.ensure_future(runner.serve_until_signalled())

    def on_done(name: str, loop: asyncio.Future[None]) -> None:
        if ended or serving.done():
            return  # a loop stopping after the signal is the normal shutdown
        ended.append((name, loop))
        error = None if loop.cancelled() else loop.exception()
        _log.error(
            "the notifier's %s stopped on its own; draining and exiting", name, exc_info=error
        )
        drain = asyncio.ensure_future(runner.drain())
        draining.add(drain)
        drain.add_done_callback(draining.discard)

    for name, loop in loops.items():
        loop.add_done_callback(functools.partial(on_done, name))
    status = await serving
    if ended:
        name, loop = ended[0]
        error = None if loop.cancelled() else loop.exception()
        msg = f"the notifier's {name} stopped on its own ({error!r}); restart the notifier"
        raise LoopEnded(msg) from error
    return status
