"""0033: issues imported with described files before it find their descriptions after migrating."""

from __future__ import annotations

import asyncio
import dataclasses

import asyncpg

from bugless_core.migrations import Migration, migrate, quote_schema
from bugless_core.model.backend import ModelSettings
from bugless_model_postgres import PostgresBackend
from bugless_model_postgres._text_rebuilds import rebuild
from bugless_proto import v1
from bugless_testing.model_contracts._attachments import PNG
from bugless_testing.model_contracts._edits import _word
from bugless_testing.model_contracts._import_files import store_content
from bugless_testing.model_contracts._imports import _entry, _external_id, _request
from bugless_testing.model_contracts._support import (
    eq,
    make_component,
    search_ids,
    unique,
    within,
)

#: What the release of 0031 stored for an issue: vectors and mentions of its
#: title, description and comments, none of its files' descriptions.
_AS_BEFORE = """
UPDATE issues
   SET comments_tsv = to_tsvector('english', description),
       text_tsv = to_tsvector('english', title) || to_tsvector('english', description)
 WHERE id = $1;
"""


async def test_descriptions_imported_before_0033_are_searched_and_mention_after_migrating(
    model_settings: ModelSettings, model: v1.ModelStub
) -> None:
    """The vectors and mentions of such an issue are made again; another issue keeps its own.

    The issue's vectors and mentions are put back as 0031's release wrote
    them, then 0033's statements are run and ``migrate`` (nothing left to
    apply) drains the mention queue: its words are found by text and
    ``comment:``, the name by ``mention:``, and the comment beside the file
    still by its own word.
    """
    component = await make_component(model)
    word, said, name = _word("gasket"), _word("said"), unique("qa")
    shot = await store_content(model, PNG + b"migrated", "seal.png")
    shot.description = f"The {word} as @{name} left it."
    attaching = _entry("src-qa", 2, f"{said}, see the file")
    attaching.attachments = [shot]
    done = await model.import_issue(
        _request(component.id, _external_id(), _entry("src-dev", 1, "Seen."), attaching)
    )
    assert done.issue is not None
    issue_id = done.issue.id
    other = await model.import_issue(
        _request(component.id, _external_id(), _entry("src-dev", 1, f"{said} elsewhere"))
    )
    assert other.issue is not None
    terms = [
        eq(v1.SearchField.TEXT, word),
        eq(v1.SearchField.COMMENT, word),
        eq(v1.SearchField.MENTION, name),
    ]

    async def found() -> list[list[int]]:
        return [await search_ids(model, within(component.id, t)) for t in terms]

    assert await found() == [[issue_id]] * 3
    (sql,) = [
        m.sql for m in PostgresBackend.migrations() if m.name == "attachment_description_search"
    ]
    conn = await asyncpg.connect(model_settings.database_url)
    try:
        await conn.execute(f"SET search_path TO {quote_schema(model_settings.schema)}")
        await conn.execute(_AS_BEFORE, issue_id)
        await conn.execute("DELETE FROM issue_mentions WHERE issue_id = $1", issue_id)
        assert await found() == [[], [], []]
        await conn.execute(sql)
        assert await conn.fetchval(
            "SELECT count(*) FROM issue_mentions_pending WHERE issue_id = $1", issue_id
        )
        await PostgresBackend.migrate(model_settings)
        assert await conn.fetchval("SELECT count(*) FROM issue_mentions_pending") == 0
    finally:
        await conn.close()
    assert await found() == [[issue_id]] * 3
    said_term = within(component.id, eq(v1.SearchField.COMMENT, said))
    assert sorted(await search_ids(model, said_term)) == sorted([issue_id, other.issue.id])


async def test_running_0033_again_takes_out_a_description_an_old_replica_redacted(
    model_settings: ModelSettings, model: v1.ModelStub
) -> None:
    """A replica of 0031's release redacting a described file leaves its words and mention.

    It blanks the description with the content and bumps the version only:
    the issue's vectors and mentions still hold the text. Running 0033's
    statements and ``migrate`` again (docs/upgrades.md) removes both.
    """
    component = await make_component(model)
    word, name = _word("leaked"), unique("ops")
    shot = await store_content(model, PNG + b"old replica", "leak.png")
    shot.description = f"The {word} key, ask @{name}."
    attaching = _entry("src-qa", 2)
    attaching.attachments = [shot]
    done = await model.import_issue(_request(component.id, _external_id(), attaching))
    assert done.issue is not None
    issue_id = done.issue.id
    terms = [eq(v1.SearchField.TEXT, word), eq(v1.SearchField.MENTION, name)]

    async def found() -> list[list[int]]:
        return [await search_ids(model, within(component.id, t)) for t in terms]

    (sql,) = [
        m.sql for m in PostgresBackend.migrations() if m.name == "attachment_description_search"
    ]
    conn = await asyncpg.connect(model_settings.database_url)
    try:
        await conn.execute(f"SET search_path TO {quote_schema(model_settings.schema)}")
        await conn.execute(
            "UPDATE attachments SET redacted = true, description = '' WHERE issue_id = $1",
            issue_id,
        )
        assert await found() == [[issue_id]] * 2
        await conn.execute(sql)
        await PostgresBackend.migrate(model_settings)
    finally:
        await conn.close()
    assert await found() == [[], []]


async def test_vectors_are_remade_a_batch_per_transaction_beside_writers(
    model_settings: ModelSettings, model: v1.ModelStub
) -> None:
    """0033 queues; ``migrate``'s rebuild commits each batch, locking only its issues.

    0033 used to remake every such issue in one UPDATE in the migration's
    transaction, holding all their row locks until the upgrade committed.
    Here a writer holds the last queued issue: the first batch commits
    (its issues are found, the queue keeps one) while the second waits for
    that issue alone, and finishes once the writer is done.
    """
    component = await make_component(model)
    word = _word("flange")
    ids = []
    for n in range(3):
        shot = await store_content(model, PNG + f"batch {n}".encode(), f"f{n}.png")
        shot.description = f"The {word} of part {n}."
        attaching = _entry("src-qa", 2)
        attaching.attachments = [shot]
        done = await model.import_issue(_request(component.id, _external_id(), attaching))
        assert done.issue is not None
        ids.append(done.issue.id)
    term = within(component.id, eq(v1.SearchField.TEXT, word))
    assert sorted(await search_ids(model, term)) == sorted(ids)
    (sql,) = [
        m.sql for m in PostgresBackend.migrations() if m.name == "attachment_description_search"
    ]
    schema = quote_schema(model_settings.schema)
    conn = await asyncpg.connect(model_settings.database_url)
    writer = await asyncpg.connect(model_settings.database_url)
    pool = await asyncpg.create_pool(
        model_settings.database_url, min_size=1, max_size=2,
        server_settings={"search_path": model_settings.schema},
    )  # fmt: skip
    try:
        await conn.execute(f"SET search_path TO {schema}")
        await writer.execute(f"SET search_path TO {schema}")
        await conn.execute("DELETE FROM issue_text_rebuilds")  # other tests' files: not ours
        for issue_id in ids:
            await conn.execute(_AS_BEFORE, issue_id)
        assert await search_ids(model, term) == []
        await conn.execute(sql)
        await conn.execute("DELETE FROM issue_text_rebuilds WHERE NOT issue_id = ANY ($1)", ids)
        assert (
            sorted(await conn.fetchval("SELECT array_agg(issue_id) FROM issue_text_rebuilds"))
            == ids
        )
        writing = writer.transaction()
        await writing.start()
        await writer.execute("SELECT 1 FROM issues WHERE id = $1 FOR UPDATE", ids[2])
        task = asyncio.create_task(rebuild(pool, batch=2))
        queued = "SELECT count(*) FROM issue_text_rebuilds"
        for _ in range(600):  # the first batch's commit, seen from outside it
            if await conn.fetchval(queued) == 1:
                break
            await asyncio.sleep(0.05)
        assert await conn.fetchval(queued) == 1
        assert sorted(await search_ids(model, term)) == sorted(ids[:2])
        assert not task.done()  # the last batch waits for the writer's issue
        await writing.rollback()
        assert await asyncio.wait_for(task, 30) == 3
    finally:
        await pool.close()
        await writer.close()
        await conn.close()
    assert sorted(await search_ids(model, term)) == sorted(ids)


async def test_a_schema_at_0033_as_first_shipped_gets_the_queue_and_migrates_on(
    model_settings: ModelSettings,
) -> None:
    """A deployment that applied 0033 when it remade the vectors itself is not broken.

    Its ledger says 33 and it has no ``issue_text_rebuilds`` (that 0033's
    statements made none): 0034 creates the table, empty, and ``migrate``
    (whose rebuild reads it) reaches the newest version, twice over.
    """
    settings = dataclasses.replace(model_settings, schema="mig_0033_first")
    files = PostgresBackend.migrations()
    (search,) = [m for m in files if m.name == "attachment_description_search"]
    # What matters of the first 0033 here: recorded as applied, no queue table.
    first = Migration(search.version, search.name, "SELECT 1")
    pool = await asyncpg.create_pool(model_settings.database_url, min_size=1, max_size=2)
    try:
        at = await migrate(
            pool,
            settings.schema,
            [*files[: search.version - 1], first],
            component=PostgresBackend.component,
            lock=PostgresBackend.migration_lock,
        )
        assert at == search.version
        table = "SELECT to_regclass(format('%I.issue_text_rebuilds', $1::text)) IS NOT NULL"
        assert await pool.fetchval(table, settings.schema) is False
        newest = files[-1].version
        assert await PostgresBackend.migrate(settings) == newest
        assert await pool.fetchval(table, settings.schema) is True
        queued = f"SELECT count(*) FROM {quote_schema(settings.schema)}.issue_text_rebuilds"
        assert await pool.fetchval(queued) == 0
        assert await PostgresBackend.migrate(settings) == newest
    finally:
        await pool.execute(f"DROP SCHEMA IF EXISTS {quote_schema(settings.schema)} CASCADE")
        await pool.close()
