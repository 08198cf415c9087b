"""bugless' copy of the data set: the bulk seeder, then the long issue's comments.

Issues go in through ``bench.seed`` (set-based SQL with the backend's own
expressions, checked against the backend by that module's tests). The 30
extra comments of the long issue go through the backend's ``change_issue``,
as any comment would.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import asyncpg

from bench import seed as bulk
from bench._seed_sql import BENCH_SCHEMA
from bench.peers._export import LONG_ISSUE_COMMENTS, DatasetMeta
from bugless_model_postgres import PostgresBackend
from bugless_proto import v1

SCHEMA = "bugless"


async def seed_bugless(
    database_url: str, issues: int, seed: int
) -> tuple[list[str], dict[str, int]]:
    """Seed an empty database; return the vocabulary and component ids used."""
    settings = bulk.model_settings(database_url, SCHEMA)
    await bulk.seed(settings, bulk.SeedOptions(issues=issues, seed=seed, chunk_size=20_000))
    return await seeded_inputs(database_url)


async def seeded_inputs(database_url: str) -> tuple[list[str], dict[str, int]]:
    """The vocabulary and component ids a finished seed recorded."""
    conn = await asyncpg.connect(database_url)
    try:
        words = [
            r["word"]
            for r in await conn.fetch(f"SELECT word FROM {BENCH_SCHEMA}.vocabulary ORDER BY rank")
        ]
        raw = await conn.fetchval(
            f"SELECT value FROM {BENCH_SCHEMA}.seed_info WHERE key = 'components'"
        )
    finally:
        await conn.close()
    components: dict[str, int] = json.loads(raw) if isinstance(raw, str) else raw
    return words, components


async def add_long_comments(database_url: str, meta: DatasetMeta, dataset_dir: Path) -> None:
    """Append the long issue's extra comments through the backend (skipped if present)."""
    settings = bulk.model_settings(database_url, SCHEMA)
    backend = await PostgresBackend.open(settings)
    try:
        issue = await backend.get_issue(
            v1.GetIssueRequest(caller=bulk.ADMIN, issue_id=meta.long_issue)
        )
        if issue.comment_count >= LONG_ISSUE_COMMENTS:
            return
        record = _issue_line(dataset_dir, meta.long_issue)
        version = issue.version
        changes: list[dict[str, str]] = record["changes"]
        for change in changes[-LONG_ISSUE_COMMENTS:]:
            await backend.change_issue(
                v1.ChangeIssueRequest(
                    caller=v1.Caller(user_id=change["author"], admin=True),
                    issue_id=meta.long_issue,
                    expected_version=version,
                    delta=v1.IssueDelta(),
                    comment=change["comment"],
                )
            )
            version += 1
    finally:
        await backend.close()


def _issue_line(dataset_dir: Path, issue_id: int) -> dict[str, Any]:
    with (dataset_dir / "issues.jsonl").open() as lines:
        for line in lines:
            record: dict[str, Any] = json.loads(line)
            if record["id"] == issue_id:
                return record
    msg = f"issue {issue_id} is not in {dataset_dir / 'issues.jsonl'}"
    raise LookupError(msg)
