"""BatchChangeIssues on PostgreSQL: one delta on many issues, all or nothing or each alone.

Atomic: every item's change in one transaction (:func:`_issues.change_issue`),
the first failure failing the call with the issue it stopped at. Each item is
answered with the issue as its change wrote it (``UPDATE ... RETURNING`` and
the row read under its lock, as ChangeIssue answers): no read after the
commit, one round trip a batch fewer. That answer is what a read after the
commit returns unless a later item of the batch changed the issue again,
which two things can do: write the other side of a relation (the issue's
version moves on past its own change's: seen in ``ctx.written``), or set a
parent or canonical issue (another issue's ``has_children`` and
``has_duplicates`` follow, with no version of theirs); then the issues are
read after the commit, as before. Not atomic: each item as its own ChangeIssue.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg

from bugless_core.errors import BuglessError
from bugless_model_postgres import _issues
from bugless_model_postgres._batch_create import Write
from bugless_model_postgres._context import WriteContext, fetch_issues
from bugless_model_postgres._database import translated_errors
from bugless_proto import v1

#: Fields a delta may set whose change shows on other issues without a write of theirs.
_SEEN_ON_OTHERS = frozenset({"parent_id", "duplicate_of_id"})


async def _change_all(
    ctx: WriteContext, request: v1.BatchChangeIssuesRequest
) -> dict[int, v1.Issue] | None:
    """Change every item; the issues as written, or ``None`` if a read must answer.

    ``None``: a later item may have changed an earlier item's issue (see the
    module docstring), so its change's answer may be out of date.
    """
    changed: dict[int, v1.Issue] = {}
    for item in request.issues:
        try:
            done = await _issues.change_issue(
                ctx, item.issue_id, item.expected_version, request.delta, request.comment
            )
        except BuglessError as exc:
            # The call fails as a whole; say which issue stopped it.
            if f"issue {item.issue_id}" not in exc.message:
                exc.message = f"issue {item.issue_id}: {exc.message}"
                exc.args = (exc.message,)
            raise
        changed[item.issue_id] = done.issue
    delta = request.delta
    paths = set(delta.update_mask.paths) if delta is not None and delta.update_mask else set()
    if paths & _SEEN_ON_OTHERS:
        return None
    last: dict[int, int] = {}
    for issue_id, version in ctx.written:
        last[issue_id] = max(version, last.get(issue_id, 0))
    if any(issue.version != last[issue_id] for issue_id, issue in changed.items()):
        return None
    return changed


async def batch_change_issues(
    request: v1.BatchChangeIssuesRequest,
    *,
    write: Write[dict[int, v1.Issue] | None],
    change_alone: Callable[[v1.ChangeIssueRequest], Awaitable[v1.ChangeIssueResponse]],
    pool: asyncpg.Pool,
) -> v1.BatchChangeIssuesResponse:
    """A result per item, in request order (see the module docstring).

    Args:
        request: A validated request (distinct issues, one delta).
        write: Runs one write transaction (retried on serialization failures).
        change_alone: The backend's ChangeIssue, for a batch that is not atomic.
        pool: For reading the issues after the commit when their answers may be stale.
    """
    caller = request.caller if request.caller is not None else v1.Caller()
    if request.atomic:
        found, _ = await write(caller, lambda ctx: _change_all(ctx, request))
        if found is None:
            async with translated_errors(), pool.acquire() as conn:
                found = await fetch_issues(conn, caller, [i.issue_id for i in request.issues])
        return v1.BatchChangeIssuesResponse(
            results=[
                v1.BatchChangeResult(issue_id=i.issue_id, code=0, issue=found.get(i.issue_id))
                for i in request.issues
            ]
        )
    results = []
    for item in request.issues:
        try:
            response = await change_alone(
                v1.ChangeIssueRequest(
                    caller=caller,
                    issue_id=item.issue_id,
                    expected_version=item.expected_version,
                    delta=request.delta,
                    comment=request.comment,
                )
            )
        except BuglessError as exc:
            results.append(
                v1.BatchChangeResult(
                    issue_id=item.issue_id, code=int(exc.grpc_status.value), message=exc.message
                )
            )
        else:
            results.append(
                v1.BatchChangeResult(issue_id=item.issue_id, code=0, issue=response.issue)
            )
    return v1.BatchChangeIssuesResponse(results=results)
