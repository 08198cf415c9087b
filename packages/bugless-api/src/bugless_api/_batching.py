"""Per-caller batching of concurrent calls: the scheduling both coalescers share.

:class:`bugless_api._coalesce.IssueReader` (GetIssue → BatchGetIssues) and
:class:`bugless_api._coalesce_create.IssueCreator` (CreateIssue →
BatchCreateIssues) differ only in what a batch holds and how its answer is
handed out; when a batch opens, fills, is sent and is cancelled is the same
rule for both, so it lives here once:

* A batch belongs to one caller (user, groups, admin): the Model checks it
  as that caller's own calls.
* A batch is sent after every call in it arrived, never joined once sent.
* While ``max_in_flight`` batches *of its caller* are being answered, a
  caller's new calls wait for the next free slot and gather into larger
  batches; when the caller has none in flight a call is sent on the next
  loop turn. The limit is per caller, so one caller's slow batch never holds
  up another caller's calls, and a busy caller's batches grow instead of
  multiplying: each batch is a Model call (and often an Authenticator call)
  whose per-call cost in both processes is most of what a read costs
  (bench/JOURNAL.md, "API, session 8").
* A batch holds its caller's slot until each of its calls is answered.
  Answers that need nothing from the Authenticator need not wait for it:
  the reader answers the issues whose people the user cache knows while a
  ``GetUsers`` for the others is out (bench/JOURNAL.md, "Session 12").
* A batch cancelled while answered (the server is closing) cancels every
  waiter still pending, so none hangs.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, Generic, Protocol, TypeVar

from bugless_proto import v1

_CallerKey = tuple[str, tuple[str, ...], bool]


def caller_key(caller: v1.Caller) -> _CallerKey:
    """What makes two calls the same caller's: user, groups and admin."""
    return (caller.user_id, tuple(sorted(caller.groups)), caller.admin)


class Batch(Protocol):
    """What the scheduler needs of a batch: its caller."""

    caller: v1.Caller


B = TypeVar("B", bound=Batch)


class PerCallerBatcher(ABC, Generic[B]):
    """Collects calls into per-caller batches and sends them, a few at a time.

    Args:
        max_batch: Most items per batch (a full batch is closed to new calls).
        max_in_flight: Most batches of one caller being answered at once.
    """

    def __init__(self, *, max_batch: int, max_in_flight: int) -> None:
        """Validate the bounds; no batch is open yet."""
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._open: dict[_CallerKey, B] = {}
        #: Batches not sent yet, in the order they were opened.
        self._ready: list[tuple[_CallerKey, B]] = []
        self._flush_scheduled = False
        self._running: dict[asyncio.Task[None], _CallerKey] = {}
        self._in_flight: dict[_CallerKey, int] = {}

    @abstractmethod
    def _new_batch(self, caller: v1.Caller) -> B:
        """An empty batch for ``caller``."""

    @abstractmethod
    def _size(self, batch: B) -> int:
        """How many items ``batch`` holds (compared with ``max_batch``)."""

    @abstractmethod
    def _waiters(self, batch: B) -> Iterable[asyncio.Future[Any]]:
        """Every future a call of ``batch`` awaits."""

    @abstractmethod
    async def _send(self, batch: B) -> Any:
        """The Model's reply to ``batch``."""

    @abstractmethod
    async def _settle(self, batch: B, reply: Any) -> None:
        """Name the people of ``reply`` and settle each waiter with its result or error.

        An exception fails every waiter not settled yet the same way.
        """

    def _batch_for(self, caller: v1.Caller) -> tuple[_CallerKey, B]:
        """The open batch of ``caller`` (opened if there is none) and the caller's key."""
        key = caller_key(caller)
        batch = self._open.get(key)
        if batch is None:
            batch = self._open[key] = self._new_batch(caller)
            self._ready.append((key, batch))
        return key, batch

    def _added(self, key: _CallerKey, batch: B) -> None:
        """A call of ``key`` joined ``batch``: close it when full; make sure it will be sent."""
        if self._size(batch) >= self._max_batch and self._open.get(key) is batch:
            del self._open[key]  # full: later calls start the next batch
        if not self._flush_scheduled and self._in_flight.get(key, 0) < self._max_in_flight:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Send every ready batch whose caller has a free slot, oldest first."""
        self._flush_scheduled = False
        waiting: list[tuple[_CallerKey, B]] = []
        for key, batch in self._ready:
            in_flight = self._in_flight.get(key, 0)
            if in_flight >= self._max_in_flight:
                waiting.append((key, batch))
                continue
            if self._open.get(key) is batch:
                del self._open[key]  # sent: never joined again
            self._in_flight[key] = in_flight + 1
            task = asyncio.create_task(self._answer(batch))
            self._running[task] = key
            task.add_done_callback(self._finished)
        self._ready = waiting

    def _finished(self, task: asyncio.Task[None]) -> None:
        key = self._running.pop(task)
        left = self._in_flight[key] - 1
        if left:
            self._in_flight[key] = left
        else:
            del self._in_flight[key]
        if self._ready and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    async def _answer(self, batch: B) -> None:
        try:
            await self._settle(batch, await self._send(batch))
        except Exception as exc:  # every call of the batch not answered fails the same way
            self._fail_all(batch, exc)
        finally:
            # Cancelled (the server is closing): no waiter may hang on it.
            for future in self._waiters(batch):
                if not future.done():
                    future.cancel()

    def _fail_all(self, batch: B, exc: BaseException) -> None:
        """Every call of ``batch`` fails the way the whole batch did."""
        for future in self._waiters(batch):
            if not future.done():
                future.set_exception(exc)

    async def close(self) -> None:
        """Wait for the batches being answered (the server is stopping)."""
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
