"""0033: issues imported with described files before it find their descriptions after migrating."""

from __future__ import annotations

import asyncpg

from bugless_core.migrations import quote_schema
from bugless_core.model.backend import ModelSettings
from bugless_model_postgres import PostgresBackend
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
