"""Concurrent CreateIssue calls of one caller become one BatchCreateIssues to the Model.

A bot (or a fleet of bots sharing a certificate) filing issues in parallel
makes the API call the Model once per issue: a gRPC round trip, a transaction
with its own commit and change-feed row, and the per-call work of both
processes. :class:`IssueCreator` collects the CreateIssue calls of one caller
that arrive during one turn of the event loop (or while earlier batches are
being answered) and sends them as one ``BatchCreateIssues``, the way
:class:`bugless_api._coalesce.IssueReader` batches reads.

What a caller sees does not change:

* Only calls of the *same* caller (user id, groups, admin flag) share a
  batch; the Model checks each item as that caller's own CreateIssue
  (validation, the component's ACL, the idempotency key, per item).
* Each call gets its own item's result: the issue, or the error its own
  CreateIssue would have raised (status, message, reason and metadata).
  One item's failure never fails another's call.
* A failure of the whole batch (Model unreachable, deadline) is the failure
  each call would have had. A create is never retried here: a call's
  idempotency key, if it has one, makes the client's retry safe.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bugless_api._batching import PerCallerBatcher
from bugless_api._users import UserDirectory
from bugless_api._wire_issues import BATCH_CREATE_ISSUES, as_sent, has_message
from bugless_core import limits
from bugless_core.errors import from_status
from bugless_proto import v1

#: Creates issues for one caller: the gateway's Model ``BatchCreateIssues`` call,
#: its reply as :data:`bugless_api._wire_issues.BATCH_CREATE_ISSUES` parses it
#: (upb's message, or betterproto2's for bytes upb refuses).
BatchCreate = Callable[[v1.BatchCreateIssuesRequest], Awaitable[Any]]


@dataclass
class _Batch:
    caller: v1.Caller
    items: list[v1.CreateIssueRequest] = field(default_factory=list)
    waiters: list[asyncio.Future[v1.Issue]] = field(default_factory=list)

    def add(self, item: v1.CreateIssueRequest) -> asyncio.Future[v1.Issue]:
        future: asyncio.Future[v1.Issue] = asyncio.get_running_loop().create_future()
        self.items.append(item)
        self.waiters.append(future)
        return future


class IssueCreator(PerCallerBatcher[_Batch]):
    """Answers CreateIssue calls through batched Model and Authenticator calls.

    Args:
        batch_create: The Model's BatchCreateIssues (with deadline and error mapping).
        users: Translates the new issues' user ids into usernames.
        max_batch: Most items per Model call.
        max_in_flight: Most batches of one caller waiting for the Model at once.
    """

    def __init__(
        self,
        batch_create: BatchCreate,
        users: UserDirectory,
        *,
        max_batch: int = limits.MAX_BATCH_CREATE,
        max_in_flight: int = 1,
    ) -> None:
        """Create through ``batch_create``; name people through ``users``."""
        if not 1 <= max_batch <= limits.MAX_BATCH_CREATE:
            raise ValueError(f"max_batch must be 1..{limits.MAX_BATCH_CREATE}")
        super().__init__(max_batch=max_batch, max_in_flight=max_in_flight)
        self._batch_create = batch_create
        self._users = users

    async def create(self, caller: v1.Caller, item: v1.CreateIssueRequest) -> v1.Issue:
        """The new issue with usernames, as CreateIssue by ``caller`` would return it.

        ``item`` already names user ids (the API translated its usernames);
        its own ``caller`` is not sent (the Model takes the batch's for every
        item). The issue is its wire form until read (:func:`bugless_proto.wire.encoded`).

        Raises:
            BuglessError: What this item's own CreateIssue would have raised,
                or the batch's failure.
        """
        item.caller = None
        key, batch = self._batch_for(caller)
        future = batch.add(item)
        self._added(key, batch)
        return await future

    def _new_batch(self, caller: v1.Caller) -> _Batch:
        return _Batch(caller)

    def _size(self, batch: _Batch) -> int:
        return len(batch.items)

    def _waiters(self, batch: _Batch) -> Iterable[asyncio.Future[v1.Issue]]:
        return batch.waiters

    async def _send(self, batch: _Batch) -> Any:
        return await self._batch_create(
            v1.BatchCreateIssuesRequest(caller=batch.caller, items=batch.items)
        )

    async def _settle(self, batch: _Batch, reply: Any) -> None:
        await BATCH_CREATE_ISSUES.rename(reply, self._users)  # every new issue's people
        results = reply.results
        for future, result in zip(batch.waiters, results, strict=False):
            if future.done():  # the caller went away
                continue
            if result.code == 0 and has_message(result, "issue"):
                future.set_result(as_sent(v1.Issue, result.issue))
            else:
                future.set_exception(
                    from_status(result.code, result.message, result.reason, dict(result.metadata))
                )
        for future in batch.waiters[len(results) :]:
            if not future.done():
                future.set_exception(
                    from_status(13, "the Model answered fewer results than items were sent")
                )
