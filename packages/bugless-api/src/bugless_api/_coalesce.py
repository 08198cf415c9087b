"""Concurrent GetIssue calls of one caller become one BatchGetIssues to the Model.

A bot (or a fleet of bots sharing one certificate) reading issues in parallel
makes the API call the Model once per GetIssue, and translate user ids once
per issue: each call pays a full gRPC round trip to the Model, its share of
PostgreSQL's per-statement work, and a second round trip to the Authenticator
on a name-cache miss. :class:`IssueReader` collects the GetIssue calls that
arrive during one turn of the event loop, per caller, and asks the Model for
all of them in one ``BatchGetIssues`` and the Authenticator for all their
usernames in one ``GetUsers`` (the technique is often called a data loader).

What a caller sees does not change:

* Only calls of the *same* caller (user id, groups, admin flag) share a
  batch, so visibility is decided exactly as for a single GetIssue.
* GetIssue takes no read mask, so a batch always asks for whole issues; a
  bot's own BatchGetIssues (with its read mask or without) goes to the Model
  as it came and never joins a batch here.
* A batch is sent after every call in it arrived, never joined once sent, so
  a GetIssue still sees every write that completed before it was received.
* An issue the Model lists as missing raises the same NOT_FOUND GetIssue
  raises; a failure of the whole batch (Model unreachable, deadline) is the
  failure each call would have had. Ids GetIssue would reject (zero,
  negative) never join a batch: they go to the Model's GetIssue, which gives
  its own INVALID_ARGUMENT.
* While ``max_in_flight`` batches of the caller are being answered, its new
  calls wait for the next free slot and gather into larger batches; when the
  caller has none in flight a call is sent on the next loop turn.
* The names come from the same look-up either way: when the user cache
  lacks someone, only the calls whose issue names them wait for the
  ``GetUsers``; the others are answered from the cache first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from bugless_api._batching import PerCallerBatcher
from bugless_api._users import UserDirectory
from bugless_api._wire_issues import Slot, as_sent, issue_slots, put_names
from bugless_core import limits
from bugless_core.errors import NotFound
from bugless_proto import v1

#: Fetches issues for one caller: the gateway's Model ``BatchGetIssues`` call,
#: its reply as :data:`bugless_api._wire_issues.BATCH_GET_ISSUES` parses it
#: (upb's message, or betterproto2's for bytes upb refuses).
BatchGet = Callable[[v1.BatchGetIssuesRequest], Awaitable[Any]]


@dataclass
class _Batch:
    caller: v1.Caller
    waiters: dict[int, list[asyncio.Future[v1.Issue]]] = field(default_factory=dict)

    def add(self, issue_id: int) -> asyncio.Future[v1.Issue]:
        future: asyncio.Future[v1.Issue] = asyncio.get_running_loop().create_future()
        self.waiters.setdefault(issue_id, []).append(future)
        return future


class IssueReader(PerCallerBatcher[_Batch]):
    """Answers GetIssue calls through batched Model and Authenticator calls.

    Args:
        batch_get: The Model's BatchGetIssues (with deadline and error mapping).
        users: Translates the issues' user ids into usernames.
        max_batch: Most distinct issues per Model call.
        max_in_flight: Most batches of one caller waiting for the Model at once.
    """

    def __init__(
        self,
        batch_get: BatchGet,
        users: UserDirectory,
        *,
        max_batch: int = limits.MAX_BATCH_GET,
        max_in_flight: int = 1,
    ) -> None:
        """Read through ``batch_get``; name people through ``users``."""
        if not 1 <= max_batch <= limits.MAX_BATCH_GET:
            raise ValueError(f"max_batch must be 1..{limits.MAX_BATCH_GET}")
        super().__init__(max_batch=max_batch, max_in_flight=max_in_flight)
        self._batch_get = batch_get
        self._users = users

    async def get(self, caller: v1.Caller, issue_id: int) -> v1.Issue:
        """The issue with usernames, as GetIssue by ``caller`` would return it.

        The issue is its wire form until read (:func:`bugless_proto.wire.encoded`).

        Raises:
            NotFound: The issue does not exist or the caller may not view it.
            BuglessError: The batch failed (each of its calls gets the error).
        """
        key, batch = self._batch_for(caller)
        future = batch.add(issue_id)
        self._added(key, batch)
        return await future

    def _new_batch(self, caller: v1.Caller) -> _Batch:
        return _Batch(caller)

    def _size(self, batch: _Batch) -> int:
        return len(batch.waiters)  # distinct issues

    def _waiters(self, batch: _Batch) -> Iterator[asyncio.Future[v1.Issue]]:
        for futures in batch.waiters.values():
            yield from futures

    async def _send(self, batch: _Batch) -> Any:
        return await self._batch_get(
            v1.BatchGetIssuesRequest(caller=batch.caller, issue_ids=list(batch.waiters))
        )

    async def _settle(self, batch: _Batch, reply: Any) -> None:
        """Name every issue's people at once; answer what the user cache can name first.

        When the cache lacks someone, the ``GetUsers`` for them is awaited
        only by the calls whose issue names them: the other issues take their
        names from the cache and are answered before it is sent.
        """
        named: list[tuple[Any, list[Slot]]] = []
        for issue in reply.issues:
            slots: list[Slot] = []
            issue_slots(issue, slots)
            named.append((issue, slots))
        answered: set[int] = set()
        asked = False

        async def asking(missing: list[str]) -> None:
            nonlocal asked
            if asked:  # a later GetUsers of several (a batch naming very many people)
                return
            asked = True
            absent = set(missing)
            ready = [(i, s) for i, s in named if not any(u in absent for _, _, u in s)]
            if not ready:
                return
            # Fresh in the cache a moment ago: answered without the Authenticator.
            names = await self._users.usernames_by_id({u for _, s in ready for _, _, u in s})
            for issue, slots in ready:
                put_names(slots, names)
                self._answer_issue(batch, issue.id, as_sent(v1.Issue, issue))
                answered.add(issue.id)

        wanted = {user_id for _, slots in named for _, _, user_id in slots}
        names = await self._users.usernames_by_id(wanted, asking=asking) if wanted else {}
        for issue, slots in named:
            if issue.id not in answered:
                put_names(slots, names)
                self._answer_issue(batch, issue.id, as_sent(v1.Issue, issue))
                answered.add(issue.id)
        for issue_id in batch.waiters:
            if issue_id not in answered:
                self._answer_issue(batch, issue_id, None)

    def _answer_issue(self, batch: _Batch, issue_id: int, issue: v1.Issue | None) -> None:
        """Every call of ``batch`` for ``issue_id``: the issue, or NOT_FOUND when None."""
        for future in batch.waiters.get(issue_id, ()):
            if future.done():  # the caller went away
                continue
            if issue is None:
                future.set_exception(
                    NotFound(f"issue {issue_id} not found", metadata={"issue_id": str(issue_id)})
                )
            else:
                future.set_result(issue)
