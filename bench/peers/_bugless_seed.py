"""bugless' copy of the data set: its people, the bulk seeder, then the long issue's comments.

The data set names people by username (``user0001`` ..), as Trac and Roundup
store them. bugless stores the Authenticator's opaque user ids instead, and a
migration gets them the way ``bugless import`` does: one ``MatchImportUsers``
call per thousand people (as the import identity, with the token of a user
holding ``import_issues``) matches each to an account by username, else
creates a placeholder account (``user0007@peers``, shown as ``user0007``), and
returns the ids. Rows written with usernames would show "unknown user" on
every page where the peers show names (the comparison would not be like for
like), so every row the seeder writes carries the returned ids.

Issues go in through ``bench.seed`` (set-based SQL with the backend's own
expressions, checked against the backend by that module's tests), which
writes the generator's usernames; while it runs, triggers on ``issues`` and
``issue_history`` replace each username (reporter, assignee, cc, authors, the
assignee and cc of the creation entry) by its id from ``bench_meta.people``
as the rows are inserted (``ENABLE ALWAYS``: the seeder's sessions run as a
replica's, which skips ordinary triggers), so the tables come out as the
plain seed leaves them, with ids. The one user principal of the components'
ACLs is mapped after. The 30 extra comments of the long issue go through the
backend's ``change_issue``, by their authors' ids, as any comment would.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import asyncpg

from bench import seed as bulk
from bench._seed_sql import BENCH_SCHEMA, SAVE_INFO
from bench.peers._export import LONG_ISSUE_COMMENTS, DatasetMeta
from bugless_core import limits
from bugless_core.clients import ServiceAddress, call
from bugless_model_postgres import PostgresBackend
from bugless_proto import v1

SCHEMA = "bugless"
#: What the seeded rows hold; part of the database's name (a new format is a
#: new database, so a cached one of an older format is never reused).
#: 1: usernames as user ids; 2: the Authenticator's ids (placeholders).
SEED_FORMAT = 2
#: The import source the people's placeholders are keyed by.
IMPORT_SOURCE = "peers"

_PEOPLE = f"""
CREATE SCHEMA IF NOT EXISTS {BENCH_SCHEMA};
CREATE TABLE IF NOT EXISTS {BENCH_SCHEMA}.people (name text PRIMARY KEY, user_id text NOT NULL);
"""
#: username -> id (unchanged when not a person: '' stays '').
_MAPPING_FUNCTIONS = f"""
CREATE FUNCTION {BENCH_SCHEMA}.person(text) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT user_id FROM {BENCH_SCHEMA}.people WHERE name = $1), $1)
$$;
CREATE FUNCTION {BENCH_SCHEMA}.people_of(text[]) RETURNS text[] LANGUAGE sql STABLE AS $$
    SELECT coalesce(array_agg({BENCH_SCHEMA}.person(n) ORDER BY i), '{{}}')
      FROM unnest($1) WITH ORDINALITY AS u(n, i)
$$;
CREATE FUNCTION {BENCH_SCHEMA}.issue_people() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.reporter := {BENCH_SCHEMA}.person(NEW.reporter);
    NEW.assignee := {BENCH_SCHEMA}.person(NEW.assignee);
    NEW.cc := {BENCH_SCHEMA}.people_of(NEW.cc);
    RETURN NEW;
END $$;
CREATE FUNCTION {BENCH_SCHEMA}.history_people() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.author := {BENCH_SCHEMA}.person(NEW.author);
    NEW.changes := (
        SELECT coalesce(jsonb_agg(CASE c->>'field'
            WHEN 'assignee' THEN c || jsonb_build_object(
                'old', {BENCH_SCHEMA}.person(c->>'old'), 'new', {BENCH_SCHEMA}.person(c->>'new'))
            WHEN 'cc' THEN c || jsonb_build_object(
                'added', to_jsonb({BENCH_SCHEMA}.people_of(
                    ARRAY(SELECT jsonb_array_elements_text(c->'added')))),
                'removed', to_jsonb({BENCH_SCHEMA}.people_of(
                    ARRAY(SELECT jsonb_array_elements_text(c->'removed')))))
            ELSE c END ORDER BY i), '[]'::jsonb)
          FROM jsonb_array_elements(NEW.changes) WITH ORDINALITY AS e(c, i));
    RETURN NEW;
END $$;
CREATE TRIGGER bench_issue_people BEFORE INSERT ON issues
    FOR EACH ROW EXECUTE FUNCTION {BENCH_SCHEMA}.issue_people();
CREATE TRIGGER bench_history_people BEFORE INSERT ON issue_history
    FOR EACH ROW EXECUTE FUNCTION {BENCH_SCHEMA}.history_people();
-- The seeder's sessions run with session_replication_role = replica.
ALTER TABLE issues ENABLE ALWAYS TRIGGER bench_issue_people;
ALTER TABLE issue_history ENABLE ALWAYS TRIGGER bench_history_people;
"""
_DROP_TRIGGERS = f"""
DROP TRIGGER IF EXISTS bench_issue_people ON issues;
DROP TRIGGER IF EXISTS bench_history_people ON issue_history;
DROP FUNCTION IF EXISTS {BENCH_SCHEMA}.issue_people();
DROP FUNCTION IF EXISTS {BENCH_SCHEMA}.history_people();
"""
#: The user principals of the components' ACLs ("user:<name>" -> "user:<id>").
_MAP_ACLS = f"""
CREATE FUNCTION {BENCH_SCHEMA}.principal(text) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN $1 LIKE 'user:%' THEN 'user:' || {BENCH_SCHEMA}.person(substr($1, 6))
                ELSE $1 END
$$;
UPDATE components SET
    acl = (SELECT coalesce(jsonb_agg(
                e || jsonb_build_object('p', {BENCH_SCHEMA}.principal(e->>'p')) ORDER BY i),
                '[]'::jsonb)
             FROM jsonb_array_elements(acl) WITH ORDINALITY AS x(e, i)),
    effective_acl = (SELECT coalesce(jsonb_object_agg({BENCH_SCHEMA}.principal(k), v), '{{}}')
             FROM jsonb_each(effective_acl) AS x(k, v)),
    viewers = ARRAY(SELECT {BENCH_SCHEMA}.principal(p)
             FROM unnest(viewers) WITH ORDINALITY AS x(p, i) ORDER BY i)
 WHERE effective_acl::text LIKE '%"user:%';
DROP FUNCTION {BENCH_SCHEMA}.principal(text);
"""
_DROP_MAPPING_FUNCTIONS = f"""
DROP FUNCTION IF EXISTS {BENCH_SCHEMA}.people_of(text[]);
DROP FUNCTION IF EXISTS {BENCH_SCHEMA}.person(text);
"""


async def match_people(
    auth: ServiceAddress, token: str, usernames: Sequence[str]
) -> dict[str, str]:
    """Username -> Authenticator user id, as ``bugless import`` resolves a tracker's people.

    Args:
        auth: The Authenticator, reached as the import identity.
        token: A session token of a user with ``import_issues``.
        usernames: The people, by their username in the source tracker.
    """
    ids: dict[str, str] = {}
    channel = auth.channel()
    try:
        stub = v1.AuthenticatorStub(channel)
        for start in range(0, len(usernames), limits.MAX_USER_LOOKUP):
            batch = usernames[start : start + limits.MAX_USER_LOOKUP]
            answer = await call(
                stub.match_import_users,
                v1.MatchImportUsersRequest(
                    token=token,
                    source=IMPORT_SOURCE,
                    people=[v1.SourcePerson(key=name, username=name) for name in batch],
                    create_placeholders=True,
                ),
            )
            for name, match in zip(batch, answer.matches, strict=True):
                if match.user is None:
                    msg = f"the Authenticator matched {name!r} to nobody"
                    raise RuntimeError(msg)
                ids[name] = match.user.user_id
    finally:
        channel.close()
    return ids


async def seed_bugless(
    database_url: str, issues: int, seed: int, people: Mapping[str, str]
) -> tuple[list[str], dict[str, int]]:
    """Seed an empty database with ``people``'s ids; return the vocabulary and component ids."""
    settings = bulk.model_settings(database_url, SCHEMA)
    await PostgresBackend.migrate(settings)
    conn = await bulk.connect(settings)
    try:
        await conn.execute(_PEOPLE)
        await conn.copy_records_to_table(
            "people", schema_name=BENCH_SCHEMA, records=sorted(people.items())
        )
        await conn.execute(_MAPPING_FUNCTIONS)
        try:
            await bulk.seed(settings, bulk.SeedOptions(issues=issues, seed=seed, chunk_size=20_000))
        finally:
            await conn.execute(_DROP_TRIGGERS)
        await conn.execute(_MAP_ACLS)
        await conn.execute(_DROP_MAPPING_FUNCTIONS)
        await conn.execute("VACUUM (ANALYZE) components")
        await conn.execute(SAVE_INFO, "seed_format", json.dumps(SEED_FORMAT))
    finally:
        await conn.close()
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


async def _people_ids(database_url: str) -> dict[str, str]:
    """The username -> id mapping the seed recorded."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(f"SELECT name, user_id FROM {BENCH_SCHEMA}.people")
    finally:
        await conn.close()
    return {r["name"]: r["user_id"] for r in rows}


async def add_long_comments(database_url: str, meta: DatasetMeta, dataset_dir: Path) -> None:
    """Append the long issue's extra comments through the backend (skipped if present)."""
    settings = bulk.model_settings(database_url, SCHEMA)
    ids = await _people_ids(database_url)
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
                    caller=v1.Caller(user_id=ids[change["author"]], admin=True),
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
