"""Migration 0025: mentions read from the raw text are read again from the Markdown's prose.

Before 0025 the Model kept the ``@name``\\s of the raw text: "`@carol`" (code)
and a URL's "@carol" were kept, "_@bob_" (emphasis) and "&#64;bob" were
not, while the web linked just the reverse. The test writes issues through
the Model, sets their rows back to what the raw reading kept (behind the
Model's back) and records the scan an upgrade from before 0025 gets
(migration 0028: 0025's rule, every issue whose texts hold an "@" or an
"&"; test_mention_scans.py checks its queue against 0025's released
statement); the next ``migrate`` queues and recomputes them, and
``mention:`` finds what the web links.
"""

from __future__ import annotations

import asyncpg

from bugless_core.mentions import find_mentions, mentioned_usernames
from bugless_core.migrations import quote_schema
from bugless_core.model.backend import ModelSettings
from bugless_model_postgres import PostgresBackend, _mention_scans
from bugless_proto import v1
from bugless_testing.model_contracts._support import (
    change,
    eq,
    make_component,
    make_issue,
    search_ids,
    unique,
    within,
)


def raw_mentions(*texts: str) -> list[str]:
    """What the Model kept for ``texts`` before 0025: the grammar over the raw text."""
    return sorted({m.key for t in texts for m in find_mentions(t)})


async def _kept(conn: asyncpg.Connection, issue_id: int) -> list[str]:
    """The mention keys stored for ``issue_id``, sorted."""
    rows = await conn.fetch("SELECT username FROM issue_mentions WHERE issue_id = $1", issue_id)
    return sorted(r["username"] for r in rows)


async def test_mentions_read_from_the_raw_text_are_recomputed_from_the_markdown(
    model_settings: ModelSettings, model: v1.ModelStub
) -> None:
    root = await make_component(model)
    bob, carol = unique("bob"), unique("carol")
    descriptions = {
        "plain": f"ping @{bob}",
        "emphasis": f"_@{bob}_, please look",
        "entity": f"&#64;{bob} and &amp; more",
        "code": f"not `@{carol}` nor\n\n```\n@{carol}\n```",
        "url": f"see https://example.com/@{carol}",
        "nobody": "no one here",
    }
    issues = {k: await make_issue(model, root.id, description=t) for k, t in descriptions.items()}
    texts = {k: [t] for k, t in descriptions.items()}
    commented = await make_issue(model, root.id, title=f"title `@{carol}`")
    await change(model, commented, comment=f"and **@{bob}**")
    texts["commented"] = [f"title `@{carol}`", f"and **@{bob}**"]
    issues["commented"] = commented
    ids = {k: i.id for k, i in issues.items()}
    new_reading = {k: sorted(mentioned_usernames(*t)) for k, t in texts.items()}

    conn = await asyncpg.connect(model_settings.database_url)
    try:
        await conn.execute(f"SET search_path TO {quote_schema(model_settings.schema)}")
        for k, issue_id in ids.items():
            assert await _kept(conn, issue_id) == new_reading[k], k
            # The release before: the raw reading's rows.
            await conn.execute("DELETE FROM issue_mentions WHERE issue_id = $1", issue_id)
            await conn.execute(
                "INSERT INTO issue_mentions (issue_id, username) SELECT $1, unnest($2::text[])",
                issue_id,
                raw_mentions(*texts[k]),
            )
        await conn.execute(_mention_scans.RESCAN, 25)
        differ = {k for k in ids if raw_mentions(*texts[k]) != new_reading[k]}
        assert differ == {"emphasis", "entity", "code", "url", "commented"}
        assert await search_ids(model, within(root.id, eq(v1.SearchField.MENTION, carol))) != []

        await PostgresBackend.migrate(model_settings)
        assert await conn.fetchval("SELECT count(*) FROM issue_mentions_pending") == 0
        for k, issue_id in ids.items():
            assert await _kept(conn, issue_id) == new_reading[k], k
    finally:
        await conn.close()

    async def mentioning(name: str) -> list[int]:
        return await search_ids(model, within(root.id, eq(v1.SearchField.MENTION, name)))

    assert sorted(await mentioning(bob)) == sorted(
        [ids["commented"], ids["entity"], ids["emphasis"], ids["plain"]]
    )
    assert await mentioning(carol) == []
