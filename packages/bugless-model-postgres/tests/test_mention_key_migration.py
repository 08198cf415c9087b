"""Migration 0023: mentions written by the ASCII grammar are read again by the usernames' own.

Before 0023 the Model kept what ``@[A-Za-z0-9][A-Za-z0-9._-]{0,62}[A-Za-z0-9]``
found, lower-cased: nothing for "@Ölaf", "jos" for "@josé", "ann" for
"@ann@corp.example". The test writes issues through the Model, sets their
rows back to what that grammar kept (behind the Model's back) and records
the scan an upgrade from before 0023 gets (migration 0028: 0025's rule, an
"@" or an "&" anywhere, which covers every text the two grammars read
differently); the next ``migrate`` queues and recomputes them, and a
search by any spelling finds them.
"""

from __future__ import annotations

import re

import asyncpg

from bugless_core.mentions import mentioned_usernames
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

#: The grammar of migrations 0011-0022 (bugless_core.mentions before 0023).
ASCII_GRAMMAR = re.compile(r"(?<![\w@.])@([A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9])?)")


def ascii_mentions(*texts: str) -> list[str]:
    """What the Model kept for ``texts`` before 0023."""
    return sorted({m.group(1).lower() for t in texts for m in ASCII_GRAMMAR.finditer(t)})


async def _kept(conn: asyncpg.Connection, issue_id: int) -> list[str]:
    """The mention keys stored for ``issue_id``, sorted."""
    rows = await conn.fetch("SELECT username FROM issue_mentions WHERE issue_id = $1", issue_id)
    return sorted(r["username"] for r in rows)


async def test_mentions_the_ascii_grammar_misread_are_recomputed_after_migrating(
    model_settings: ModelSettings, model: v1.ModelStub
) -> None:
    root = await make_component(model)
    bob, olaf, jose, ann = unique("bob"), unique("Ölaf"), unique("josé"), unique("ann")
    long_name = "l" * 70
    texts = {
        "plain": f"ping @{bob}, and mail {bob}@example.com",
        "olaf": f"ask @{olaf}.",
        "jose": f"cc @{jose}",
        "email": f"for @{ann}@corp.example",
        "plus": f"@{bob}+review please",
        "long": f"@{long_name} is nobody",
    }
    issues = {k: await make_issue(model, root.id, description=t) for k, t in texts.items()}
    commented = await make_issue(model, root.id, title=f"title @{bob}")
    await change(model, commented, comment=f"and @{olaf.upper()}")
    texts["commented"] = f"title @{bob}\nand @{olaf.upper()}"
    issues["commented"] = commented
    ids = {k: i.id for k, i in issues.items()}

    conn = await asyncpg.connect(model_settings.database_url)
    try:
        await conn.execute(f"SET search_path TO {quote_schema(model_settings.schema)}")
        for k, issue_id in ids.items():
            assert await _kept(conn, issue_id) == sorted(mentioned_usernames(texts[k])), k
            # The release before: the ASCII grammar's rows.
            await conn.execute("DELETE FROM issue_mentions WHERE issue_id = $1", issue_id)
            await conn.execute(
                "INSERT INTO issue_mentions (issue_id, username) SELECT $1, unnest($2::text[])",
                issue_id,
                ascii_mentions(texts[k]),
            )
        await conn.execute(_mention_scans.RESCAN, 25)
        differ = {
            k for k in ids if ascii_mentions(texts[k]) != sorted(mentioned_usernames(texts[k]))
        }
        assert differ == {"olaf", "jose", "email", "plus", "long", "commented"}
        assert await search_ids(model, within(root.id, eq(v1.SearchField.MENTION, olaf))) == []

        await PostgresBackend.migrate(model_settings)
        assert await conn.fetchval("SELECT count(*) FROM issue_mentions_pending") == 0
        for k, issue_id in ids.items():
            assert await _kept(conn, issue_id) == sorted(mentioned_usernames(texts[k])), k
    finally:
        await conn.close()

    async def mentioning(name: str) -> list[int]:
        return await search_ids(model, within(root.id, eq(v1.SearchField.MENTION, name)))

    assert await mentioning(olaf) == [ids["commented"], ids["olaf"]]
    assert await mentioning(olaf.lower()) == [ids["commented"], ids["olaf"]]
    assert await mentioning(jose) == [ids["jose"]]
    assert await mentioning(f"{ann}@corp.example") == [ids["email"]]
    assert await mentioning(ann) == []
    assert await mentioning(f"{bob}+review") == [ids["plus"]]
    assert await mentioning(long_name) == [ids["long"]]
    assert await mentioning(bob) == [ids["commented"], ids["plain"]]
