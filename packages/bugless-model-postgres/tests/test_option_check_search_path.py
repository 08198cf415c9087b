"""Migration 0015's option check runs whatever the inserting session's search_path.

A data-only ``pg_restore`` sets ``search_path`` to '' and inserts into the
schema's tables by their qualified names, firing their triggers; so may an
operator's repair script. The check must find ``custom_fields`` in the
Model's schema all the same (migration 0016), and still refuse a row naming
an option the field does not have (spelled otherwise: migration 0017).
"""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from write_support import ADMIN, create, fresh_component

from bugless_core.model.backend import ModelSettings
from bugless_model_postgres import PostgresBackend
from bugless_proto import v1

INSERT = """
INSERT INTO {schema}.issue_custom_values (issue_id, field_id, value, component_id, status)
VALUES ($1, $2, $3, $4, 1)
"""


async def test_a_session_without_the_schema_on_its_path_inserts_values_checked(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings
) -> None:
    backend = bugless_model_backend
    component = await fresh_component(backend, "restore")
    field = await backend.create_custom_field(
        v1.CreateCustomFieldRequest(
            caller=ADMIN,
            component_id=component.id,
            name=f"Severity {uuid.uuid4().hex[:6]}",
            type=v1.CustomFieldType.ENUM_MULTI,
            options=["low", "high"],
        )
    )
    issue = await create(backend, component.id)
    insert = INSERT.format(schema=f'"{model_settings.schema}"')
    conn = await asyncpg.connect(model_settings.database_url, server_settings={"search_path": ""})
    try:
        await conn.execute(insert, issue.id, field.id, "high", component.id)
        with pytest.raises(asyncpg.CheckViolationError, match="no option spelled 'gone'"):
            await conn.execute(insert, issue.id, field.id, "gone", component.id)
        # Exactly as spelled (migration 0017): the Model stores the option's spelling.
        with pytest.raises(asyncpg.CheckViolationError, match="no option spelled 'LOW'"):
            await conn.execute(insert, issue.id, field.id, "LOW", component.id)
        stored = await conn.fetch(
            f'SELECT value FROM "{model_settings.schema}".issue_custom_values'
            " WHERE issue_id = $1 AND field_id = $2",
            issue.id,
            field.id,
        )
    finally:
        await conn.close()
    assert [row["value"] for row in stored] == ["high"]
