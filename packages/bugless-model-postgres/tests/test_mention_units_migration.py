"""Migration 0027: names that emphasis cut are read again as one unit.

Before 0027 the Markdown reading let CommonMark's emphasis cut a name with
an ``_`` beside punctuation ("for @0._0_.0." kept "0"). The test writes
issues through the Model, sets their rows back to what that reading kept
(the same parser without :func:`bugless_core.markdown.mention_units`, behind
the Model's back) and records the scan an upgrade from 0025 or 0026 gets
(migration 0028: 0027's rule, an "@" and an "_" beside punctuation;
test_mention_scans.py checks its queue against 0027's released statement);
the next ``migrate`` queues and recomputes them, and ``mention:`` finds the
whole name.
"""

from __future__ import annotations

import asyncpg

from bugless_core.markdown import markdown_parser
from bugless_core.mentions import mentioned_usernames, prose_mentions
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

#: The reading before 0027: the one parser, without mention units.
_CUTTING = markdown_parser.__wrapped__().disable("mention_unit")


def cut_mentions(*texts: str) -> list[str]:
    """What the Model kept for ``texts`` before 0027."""
    return sorted(
        {m.key for t in texts for _, found in prose_mentions(_CUTTING.parse(t)) for m in found}
    )


async def _kept(conn: asyncpg.Connection, issue_id: int) -> list[str]:
    """The mention keys stored for ``issue_id``, sorted."""
    rows = await conn.fetch("SELECT username FROM issue_mentions WHERE issue_id = $1", issue_id)
    return sorted(r["username"] for r in rows)


async def test_names_emphasis_cut_are_recomputed_whole(
    model_settings: ModelSettings, model: v1.ModelStub
) -> None:
    root = await make_component(model)
    ann, bob = unique("ann"), unique("bob")
    dotted, paired = f"{ann}._0_.0", f"{bob}_x_.y"
    descriptions = {
        "cut": f"for @{dotted}.",
        "paired": f"_@{paired}_, please",
        "between letters": f"ping @{ann}_x and @{bob}",
        "mail": f"mail me_@{ann}.example",
        "nobody": "no_one_.here",
    }
    issues = {k: await make_issue(model, root.id, description=t) for k, t in descriptions.items()}
    texts = {k: [t] for k, t in descriptions.items()}
    titled = await make_issue(model, root.id, title=f"ask @{dotted}")
    texts["title"] = [f"ask @{dotted}"]
    issues["title"] = titled
    commented = await make_issue(model, root.id, title="plain")
    await change(model, commented, comment=f"and **@{dotted}**")
    texts["comment"] = ["plain", f"and **@{dotted}**"]
    issues["comment"] = commented
    ids = {k: i.id for k, i in issues.items()}
    whole = {k: sorted(mentioned_usernames(*t)) for k, t in texts.items()}

    conn = await asyncpg.connect(model_settings.database_url)
    try:
        await conn.execute(f"SET search_path TO {quote_schema(model_settings.schema)}")
        for k, issue_id in ids.items():
            assert await _kept(conn, issue_id) == whole[k], k
            # The release before: the cutting reading's rows.
            await conn.execute("DELETE FROM issue_mentions WHERE issue_id = $1", issue_id)
            await conn.execute(
                "INSERT INTO issue_mentions (issue_id, username) SELECT $1, unnest($2::text[])",
                issue_id,
                cut_mentions(*texts[k]),
            )
        await conn.execute(_mention_scans.RESCAN, 27)
        differ = {k for k in ids if cut_mentions(*texts[k]) != whole[k]}
        assert differ == {"cut", "paired", "title", "comment"}
        assert await search_ids(model, within(root.id, eq(v1.SearchField.MENTION, dotted))) == []

        await PostgresBackend.migrate(model_settings)
        assert await conn.fetchval("SELECT count(*) FROM issue_mentions_pending") == 0
        for k, issue_id in ids.items():
            assert await _kept(conn, issue_id) == whole[k], k
    finally:
        await conn.close()

    async def mentioning(name: str) -> list[int]:
        return await search_ids(model, within(root.id, eq(v1.SearchField.MENTION, name)))

    assert await mentioning(dotted) == [ids["comment"], ids["title"], ids["cut"]]
    assert await mentioning(paired) == [ids["paired"]]
    assert await mentioning(ann) == []
