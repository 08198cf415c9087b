"""BatchCreateIssues on PostgreSQL: the items in one transaction, each on its own terms.

The API frontend sends concurrent CreateIssue calls of one caller as one
BatchCreateIssues (``bugless_api._coalesce_create``), so each item must come
out as its own CreateIssue would. Items without relations or hotlists share
one transaction: one BEGIN/COMMIT and one change-feed row for all of them,
and each item's checks raise before it writes anything, so a failing item is
left out while the others are written. Items touching other rows (relations,
hotlists, parent, duplicate) may fail after a first write, which a shared
transaction could not undo for them alone: each is created in its own
transaction after.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from bugless_core.errors import BuglessError
from bugless_core.model.backend import batch_create_failure
from bugless_model_postgres import _issues
from bugless_model_postgres._context import WriteContext, fetch_issues, issue_not_found
from bugless_model_postgres._database import translated_errors
from bugless_proto import v1

T = TypeVar("T")

#: The backend's write transaction (``PostgresBackend._write``).
Write = Callable[
    [v1.Caller | None, Callable[[WriteContext], Awaitable[T]]], Awaitable[tuple[T, WriteContext]]
]
_Outcomes = dict[int, _issues.Created | BuglessError]


async def batch_create_issues(
    request: v1.BatchCreateIssuesRequest,
    *,
    write: Write[_Outcomes],
    create_alone: Callable[[v1.CreateIssueRequest], Awaitable[v1.Issue]],
    pool: asyncpg.Pool,
) -> v1.BatchCreateIssuesResponse:
    """A result per item, in request order (see the module docstring).

    Args:
        request: Validated items, each with the request's caller.
        write: Runs one write transaction (retried on serialization failures).
        create_alone: The backend's CreateIssue, for items created on their own.
        pool: For reading back issues an idempotency key made earlier.
    """
    caller = request.caller or v1.Caller()
    items = list(request.items)
    shared = [i for i, item in enumerate(items) if _issues.shares_a_transaction(item)]

    async def together(ctx: WriteContext) -> _Outcomes:
        outcomes: _Outcomes = {}
        for index in shared:
            try:
                outcomes[index] = await _issues.create_issue(ctx, items[index], batch=True)
            except BuglessError as exc:  # raised before the item wrote anything
                outcomes[index] = exc
        return outcomes

    results: dict[int, v1.BatchCreateResult] = {}
    if shared:
        outcomes, _ = await write(caller, together)
        # An idempotency key used before: the issue as it is now, as CreateIssue answers.
        reread = sorted(
            {
                o.issue_id
                for o in outcomes.values()
                if isinstance(o, _issues.Created) and o.issue is None
            }
        )
        found: dict[int, v1.Issue] = {}
        if reread:
            async with translated_errors(), pool.acquire() as conn:
                found = await fetch_issues(conn, caller, reread)
        for index, outcome in outcomes.items():
            if isinstance(outcome, BuglessError):
                results[index] = batch_create_failure(outcome)
                continue
            issue = outcome.issue or found.get(outcome.issue_id)
            results[index] = (
                v1.BatchCreateResult(code=0, issue=issue)
                if issue is not None
                else batch_create_failure(issue_not_found(outcome.issue_id))
            )
    for index, item in enumerate(items):
        if index in results:
            continue
        try:
            results[index] = v1.BatchCreateResult(code=0, issue=await create_alone(item))
        except BuglessError as exc:
            results[index] = batch_create_failure(exc)
    return v1.BatchCreateIssuesResponse(results=[results[i] for i in range(len(items))])
