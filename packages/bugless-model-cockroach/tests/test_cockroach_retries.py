"""The retry loop against real serialization failures (SQLSTATE 40001).

PostgreSQL at SERIALIZABLE raises 40001 where CockroachDB does: a transaction
that read or locked a row another one changed and committed meanwhile must be
re-run. These tests provoke that for real and check what CockroachDB clients
must guarantee: every acknowledged write is there, no change listener fires
for a failed try, and a transaction that keeps losing is given up as
UNAVAILABLE with nothing written.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import AsyncIterator

import asyncpg
import pytest

from bugless_core.errors import Unavailable
from bugless_model_cockroach import CockroachBackend
from bugless_model_cockroach._dialect import COCKROACH_RETRIES, CockroachRetryPolicy
from bugless_model_postgres._context import WriteContext
from bugless_model_postgres._database import run_write
from bugless_proto import v1

ADMIN = v1.Caller(user_id="root", admin=True)


@dataclasses.dataclass(frozen=True)
class CountingPolicy(CockroachRetryPolicy):
    """The backend's policy, counting the conflicts it retried."""

    seen: list[BaseException] = dataclasses.field(default_factory=list)

    def is_retryable(self, exc: BaseException) -> bool:
        retry = super().is_retryable(exc)
        if retry:
            self.seen.append(exc)
        return retry


def counting(attempts: int = COCKROACH_RETRIES.attempts) -> CountingPolicy:
    return CountingPolicy(
        attempts=attempts,
        base_delay=COCKROACH_RETRIES.base_delay,
        max_delay=COCKROACH_RETRIES.max_delay,
        jitter=True,
    )


async def issues_in_a_new_component(
    backend: CockroachBackend, name: str, count: int
) -> list[v1.Issue]:
    """A component named ``name`` holding ``count`` new issues titled ``name`` and a number."""
    component = await backend.create_component(v1.CreateComponentRequest(caller=ADMIN, name=name))
    issues = [
        await backend.create_issue(
            v1.CreateIssueRequest(
                caller=ADMIN, fields=v1.IssueFields(title=f"{name} {n}", component_id=component.id)
            )
        )
        for n in range(count)
    ]
    return issues


async def test_concurrent_conflicting_writes_are_retried_and_none_is_lost_or_announced_twice(
    bugless_model_backend: CockroachBackend,
) -> None:
    backend = bugless_model_backend
    issues = await issues_in_a_new_component(backend, "retries", 12)
    hotlist = await backend.create_hotlist(v1.CreateHotlistRequest(caller=ADMIN, name="busy"))
    announced: Counter[tuple[int, int]] = Counter()
    backend.add_change_listener(lambda issue, entry: announced.update([(issue.id, entry.version)]))
    policy = counting(attempts=30)
    backend._retry_policy = policy
    try:
        # Every call locks the one hotlist row after its issue: each commit
        # makes the others' locks fail with 40001 until they are re-run.
        results = await asyncio.gather(
            *(
                backend.add_hotlist_items(
                    v1.AddHotlistItemsRequest(
                        caller=ADMIN, hotlist_id=hotlist.id, issue_ids=[issue.id]
                    )
                )
                for issue in issues
            ),
            return_exceptions=True,
        )
    finally:
        backend._retry_policy = COCKROACH_RETRIES
        backend._change_listeners.clear()
    acknowledged = [i for i, r in zip(issues, results, strict=True) if isinstance(r, v1.Hotlist)]
    assert policy.seen, "no serialization failure happened: the test proved nothing"
    assert all(isinstance(e, asyncpg.SerializationError) for e in policy.seen)
    assert len(acknowledged) == len(issues)
    items = await backend.list_hotlist_items(
        v1.ListHotlistItemsRequest(caller=ADMIN, hotlist_id=hotlist.id)
    )
    assert sorted(item.issue_id for item in items.items) == sorted(i.id for i in issues)
    assert sorted(item.rank for item in items.items) == list(range(len(issues)))
    # One announcement per committed entry: version 2 of each issue, once.
    assert announced == Counter({(i.id, 2): 1 for i in acknowledged})


async def test_a_retried_change_answers_what_its_committed_attempt_wrote(
    bugless_model_backend: CockroachBackend,
) -> None:
    """ChangeIssue's reply is built inside each attempt (no read-back): the committed one's."""
    backend = bugless_model_backend
    issues = await issues_in_a_new_component(backend, "retried changes", 8)
    hotlist = await backend.create_hotlist(v1.CreateHotlistRequest(caller=ADMIN, name="shared"))
    policy = counting(attempts=30)
    backend._retry_policy = policy
    try:
        # Each change locks its issue, then the one hotlist row: commits make
        # the others fail with 40001 after they wrote, and they are re-run.
        replies = await asyncio.gather(
            *(
                backend.change_issue(
                    v1.ChangeIssueRequest(
                        caller=ADMIN,
                        issue_id=issue.id,
                        expected_version=issue.version,
                        delta=v1.IssueDelta(hotlist_add=[hotlist.id]),
                        comment=f"into the hotlist, {issue.id}",
                    )
                )
                for issue in issues
            )
        )
    finally:
        backend._retry_policy = COCKROACH_RETRIES
    assert policy.seen, "no serialization failure happened: the test proved nothing"
    for reply in replies:
        assert reply.issue is not None
        read = await backend.get_issue(v1.GetIssueRequest(caller=ADMIN, issue_id=reply.issue.id))
        assert reply.issue == read
        assert read.hotlist_ids == [hotlist.id]
        history = await backend.list_history(
            v1.ListHistoryRequest(caller=ADMIN, issue_id=reply.issue.id)
        )
        assert [e.version for e in history.entries] == [1, 2]
        assert reply.entry == history.entries[-1]


async def test_retried_uploads_answer_what_their_committed_attempts_wrote(
    bugless_model_backend: CockroachBackend,
) -> None:
    """Upload's reply is built inside each attempt too (no read-back): the committed one's."""
    backend = bugless_model_backend
    issues = await issues_in_a_new_component(backend, "retried uploads", 6)

    async def content() -> AsyncIterator[bytes]:
        yield b"the same bytes for every issue"

    policy = counting(attempts=30)
    backend._retry_policy = policy
    try:
        # Each upload locks its issue, then the one shared content's row:
        # commits make the others fail with 40001 after they wrote.
        replies = await asyncio.gather(
            *(
                backend.upload_attachment(
                    v1.UploadAttachmentHeader(
                        caller=ADMIN,
                        issue_id=issue.id,
                        expected_version=issue.version,
                        name="same.txt",
                        comment=f"attached to {issue.id}",
                    ),
                    content(),
                )
                for issue in issues
            )
        )
    finally:
        backend._retry_policy = COCKROACH_RETRIES
    assert policy.seen, "no serialization failure happened: the test proved nothing"
    for reply in replies:
        assert reply.issue is not None
        read = await backend.get_issue(v1.GetIssueRequest(caller=ADMIN, issue_id=reply.issue.id))
        assert reply.issue == read
        history = await backend.list_history(
            v1.ListHistoryRequest(caller=ADMIN, issue_id=reply.issue.id)
        )
        assert [e.version for e in history.entries] == [1, 2]
        assert reply.entry == history.entries[-1]
        listed = await backend.list_attachments(
            v1.ListAttachmentsRequest(caller=ADMIN, issue_id=reply.issue.id)
        )
        assert listed.attachments == [reply.attachment]


async def test_a_transaction_that_keeps_conflicting_is_given_up_with_nothing_written(
    bugless_model_backend: CockroachBackend,
) -> None:
    backend = bugless_model_backend
    pool = backend._pool
    await pool.execute("CREATE TABLE IF NOT EXISTS retry_probe (id int PRIMARY KEY, n int)")
    await pool.execute("INSERT INTO retry_probe VALUES (1, 0) ON CONFLICT (id) DO NOTHING")
    start = await pool.fetchval("SELECT n FROM retry_probe WHERE id = 1")
    attempts = 0

    async def lose_every_time(ctx: WriteContext) -> None:
        nonlocal attempts
        attempts += 1
        await ctx.conn.fetchval("SELECT n FROM retry_probe WHERE id = 1")  # snapshot taken
        async with pool.acquire() as other:  # someone else commits a change meanwhile
            await other.execute("UPDATE retry_probe SET n = n + 1 WHERE id = 1")
        await ctx.conn.execute("UPDATE retry_probe SET n = -1000 WHERE id = 1")

    policy = counting(attempts=3)
    with pytest.raises(Unavailable, match="conflicted with concurrent ones 3 times"):
        await run_write(pool, ADMIN, "", lose_every_time, policy=policy)
    assert attempts == 3
    assert len(policy.seen) == 3
    assert all(getattr(e, "sqlstate", None) == "40001" for e in policy.seen)
    # Only the three interfering commits landed; our update never did.
    assert await pool.fetchval("SELECT n FROM retry_probe WHERE id = 1") == start + 3


def test_cockroach_restart_errors_are_retryable_and_ambiguous_commits_are_not() -> None:
    restart = asyncpg.PostgresError.new(
        {"C": "40001", "M": "restart transaction: TransactionRetryWithProtoRefreshError: ..."}
    )
    ambiguous = asyncpg.PostgresError.new({"C": "40003", "M": "result is ambiguous"})
    assert COCKROACH_RETRIES.is_retryable(restart)
    assert not COCKROACH_RETRIES.is_retryable(ambiguous)
    assert not COCKROACH_RETRIES.is_retryable(ValueError("restart transaction"))


def test_backoff_is_capped_exponential_with_full_jitter() -> None:
    for attempt in range(12):
        cap = min(COCKROACH_RETRIES.max_delay, COCKROACH_RETRIES.base_delay * 2**attempt)
        delays = [COCKROACH_RETRIES.delay(attempt) for _ in range(50)]
        assert all(0 <= d <= cap for d in delays)
    assert max(COCKROACH_RETRIES.delay(30) for _ in range(50)) <= COCKROACH_RETRIES.max_delay
