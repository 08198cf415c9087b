"""Migrations that key names and text by the Model's case folding (``str.casefold``).

Each rewrites what a database written by the release before holds (keys
folded by SQL's ``lower()``, or none) with the keys the Model computes, in
Python, right after migrating; the tests set rows back to the former state
behind the Model's back and migrate again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import asyncpg
import pytest

from bugless_core.errors import FailedPrecondition, NotFound
from bugless_core.migrations import quote_schema
from bugless_core.model.backend import ModelSettings
from bugless_core.search.build import term as search_term
from bugless_model_postgres import PostgresBackend
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask
from bugless_testing.model_contracts._attachments import upload
from bugless_testing.model_contracts._custom_fields import create, custom_term, define, values
from bugless_testing.model_contracts._support import (
    make_component,
    make_issue,
    search_ids,
    unique,
    within,
)

ADMIN = v1.Caller(user_id="root", admin=True)
#: What the release before 0020 left after a rename: keys folded by SQL's lower().
LOWER_KEYS = """
UPDATE components d SET path_key = p.path_key
  FROM (SELECT s.id, array_agg(lower(a.name) ORDER BY u.ord) AS path_key
          FROM components s
               CROSS JOIN LATERAL unnest(s.path_ids) WITH ORDINALITY AS u(aid, ord)
               JOIN components a ON a.id = u.aid
         WHERE s.path_ids @> ARRAY[$1::bigint]
         GROUP BY s.id) p
 WHERE d.id = p.id
"""


@pytest.fixture
async def folds(
    model_settings: ModelSettings,
) -> AsyncIterator[tuple[ModelSettings, PostgresBackend]]:
    """A schema of its own (a failing fill must not stop the suite's), migrated and open."""
    settings = dataclasses.replace(model_settings, schema="mig_folds")
    await PostgresBackend.migrate(settings)
    backend = await PostgresBackend.open(settings)
    try:
        yield settings, backend
    finally:
        await backend.close()


async def _connect(settings: ModelSettings) -> asyncpg.Connection:
    conn = await asyncpg.connect(settings.database_url)
    await conn.execute(f"SET search_path TO {quote_schema(settings.schema)}")
    return conn


async def _component(backend: PostgresBackend, name: str, parent_id: int = 0) -> v1.Component:
    request = v1.CreateComponentRequest(caller=ADMIN, name=name, parent_id=parent_id)
    return await backend.create_component(request)


async def _by_path(backend: PostgresBackend, path: str) -> int:
    request = v1.GetComponentRequest(caller=ADMIN, path=path)
    return (await backend.get_component(request)).id


async def test_components_keyed_before_0020_are_keyed_by_case_folding_after_migrating(
    folds: tuple[ModelSettings, PostgresBackend],
) -> None:
    """``migrate`` rekeys paths ``lower()`` folded; a sibling the old keys let in is refused.

    Before: "Top>äpfel" does not find "Äpfel" (``lower()`` under the C
    locale leaves "Ä"), and a sibling "STRASSE" beside "Straße" is let in
    ("straße" and "strasse" differ). Migrating then writes nothing and names
    both; once one is renamed, it keys every path by ``str.casefold``.
    """
    settings, backend = folds
    top = await _component(backend, unique("Top"))
    apples = await _component(backend, "Äpfel", top.id)
    street = await _component(backend, "Straße", apples.id)
    conn = await _connect(settings)
    try:
        await conn.execute(LOWER_KEYS, top.id)
        held = await conn.fetchval("SELECT path_key FROM components WHERE id = $1", street.id)
        assert held == [top.name.lower(), "Äpfel", "straße"]
        with pytest.raises(NotFound):
            await _by_path(backend, f"{top.name}>äpfel")
        intruder = await _component(backend, "STRASSE", apples.id)
        with pytest.raises(FailedPrecondition) as refused:
            await PostgresBackend.migrate(settings)
        assert f"'{top.name}>Äpfel>Straße' (id {street.id})" in refused.value.message
        assert f"(id {intruder.id})" in refused.value.message
        assert await conn.fetchval("SELECT path_key FROM components WHERE id = $1", street.id) == (
            held
        )
        rename = v1.UpdateComponentRequest(
            caller=ADMIN,
            component=v1.Component(id=intruder.id, name="Strasse-2"),
            update_mask=FieldMask(paths=["name"]),
        )
        await backend.update_component(rename)
        await PostgresBackend.migrate(settings)
        keys = {
            r["id"]: list(r["path_key"])
            for r in await conn.fetch(
                "SELECT id, path_key FROM components WHERE path_ids @> ARRAY[$1::bigint]", top.id
            )
        }
    finally:
        await conn.close()
    folded = top.name.casefold()
    assert keys == {
        top.id: [folded],
        apples.id: [folded, "äpfel"],
        street.id: [folded, "äpfel", "strasse"],
        intruder.id: [folded, "äpfel", "strasse-2"],
    }
    assert await _by_path(backend, f"{top.name}>äpfel>STRASSE") == street.id


async def test_text_values_written_before_0021_are_folded_after_migrating(
    model_settings: ModelSettings, model: v1.ModelStub
) -> None:
    """``migrate`` folds the search rows 0021 left without; text terms then find them."""
    root = await make_component(model)
    note = await define(model, root.id, v1.CustomFieldType.TEXT)
    issue = await create(model, root.id, values(note.id, "Straße der ÄPFEL"))
    term = within(root.id, custom_term(note, v1.SearchOperator.EQ, "strasse der äpfel"))
    assert await search_ids(model, term) == [issue.id]
    conn = await _connect(model_settings)
    try:
        await conn.execute(
            "UPDATE issue_custom_values SET folded = NULL WHERE field_id = $1", note.id
        )
        assert await search_ids(model, term) == []
        assert await PostgresBackend.migrate(model_settings) > 0
        folded = await conn.fetchval(
            "SELECT folded FROM issue_custom_values WHERE field_id = $1", note.id
        )
        assert folded == "strasse der äpfel"
        unfolded = "SELECT count(*) FROM issue_custom_values WHERE folded IS NULL"
        assert await conn.fetchval(unfolded) == 0
    finally:
        await conn.close()
    assert await search_ids(model, term) == [issue.id]


async def test_attachments_made_before_0022_are_found_by_folded_name_after_migrating(
    model_settings: ModelSettings, model: v1.ModelStub
) -> None:
    """``migrate`` folds the names 0022 left without; ``attachment:`` terms then find them."""
    root = await make_component(model)
    issue = await make_issue(model, root.id)
    reply = await upload(model, issue.id, b"plan", name="Straßenplan-ÄPFEL.pdf")
    assert reply.attachment is not None
    found = within(
        root.id, search_term(v1.SearchField.ATTACHMENT, v1.SearchOperator.EQ, "strassenplan-äpfel")
    )
    assert await search_ids(model, found) == [issue.id]
    conn = await _connect(model_settings)
    try:
        unfold = "UPDATE attachments SET folded_name = NULL WHERE id = $1"
        await conn.execute(unfold, reply.attachment.id)
        assert await search_ids(model, found) == []
        await PostgresBackend.migrate(model_settings)
        folded = "SELECT folded_name FROM attachments WHERE id = $1"
        assert await conn.fetchval(folded, reply.attachment.id) == "strassenplan-äpfel.pdf"
        unfolded = "SELECT count(*) FROM attachments WHERE folded_name IS NULL"
        assert await conn.fetchval(unfolded) == 0
    finally:
        await conn.close()
    assert await search_ids(model, found) == [issue.id]
