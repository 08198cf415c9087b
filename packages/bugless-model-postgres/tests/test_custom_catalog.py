"""Custom field definitions a search reuses: a cached catalog never answers for changed fields."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from write_support import logged_statements

from bugless_core.errors import InvalidArgument
from bugless_core.model.backend import ModelSettings
from bugless_core.search.build import all_of, term
from bugless_model_postgres import PostgresBackend
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask

ADMIN = v1.Caller(user_id="root", admin=True)


def _by_name(name: str, *raw: str) -> v1.SearchNode:
    return v1.SearchNode(
        term=v1.SearchTerm(
            field=v1.SearchField.CUSTOM,
            op=v1.SearchOperator.EQ,
            values=[v1.SearchValue(text=r) for r in raw],
            custom_field_name=name,
        )
    )


async def _ids(b: PostgresBackend, name: str, *raw: str) -> list[int]:
    query = v1.StructuredQuery(filter=_by_name(name, *raw))
    page = await b.search_issues(v1.SearchIssuesRequest(caller=ADMIN, query=query, summary=True))
    return [i.id for i in page.issues]


async def test_a_cached_catalog_follows_every_change_of_its_fields(
    bugless_model_backend: PostgresBackend,
) -> None:
    """Renamed, new, changed and deleted fields show at once, though the definitions are cached.

    The second search by a name compiles from the backend's cached catalog;
    its page statement re-reads the definitions' ids and versions, and a
    change (made here through the backend, as another replica would make
    it) sends the search back to load them again.
    """
    b = bugless_model_backend
    tag = uuid.uuid4().hex[:8]
    name, renamed = f"Found In {tag}", f"Seen In {tag}"
    one = await b.create_component(v1.CreateComponentRequest(caller=ADMIN, name=f"cat-{tag}"))
    two = await b.create_component(v1.CreateComponentRequest(caller=ADMIN, name=f"cat2-{tag}"))
    found_in = await b.create_custom_field(
        v1.CreateCustomFieldRequest(
            caller=ADMIN,
            component_id=one.id,
            name=name,
            type=v1.CustomFieldType.ENUM,
            options=["4.1", "4.2"],
        )
    )

    async def issue(component: int, field: int, value: str) -> int:
        created = await b.create_issue(
            v1.CreateIssueRequest(
                caller=ADMIN,
                fields=v1.IssueFields(title=f"in {value}", component_id=component),
                custom_fields=[v1.CustomFieldValue(field_id=field, values=[value])],
            )
        )
        return created.id

    first = await issue(one.id, found_in.id, "4.2")
    assert await _ids(b, name, "4.2") == [first]
    assert await _ids(b, name, "4.2") == [first]  # from the cached catalog
    # An option added: the cached definitions would refuse the value.
    found_in = await b.update_custom_field(
        v1.UpdateCustomFieldRequest(
            caller=ADMIN,
            custom_field=v1.CustomField(id=found_in.id, options=["4.1", "4.2", "4.3"]),
            update_mask=FieldMask(paths=["options"]),
        )
    )
    later = await issue(one.id, found_in.id, "4.3")
    assert await _ids(b, name, "4.3") == [later]
    # A field of the same name on another component: the name now means both.
    other = await b.create_custom_field(
        v1.CreateCustomFieldRequest(
            caller=ADMIN,
            component_id=two.id,
            name=name,
            type=v1.CustomFieldType.ENUM,
            options=["4.2"],
        )
    )
    elsewhere = await issue(two.id, other.id, "4.2")
    assert await _ids(b, name, "4.2") == [elsewhere, first]
    # Renamed: the old name means only the other field, the new one this field.
    await b.update_custom_field(
        v1.UpdateCustomFieldRequest(
            caller=ADMIN,
            custom_field=v1.CustomField(id=found_in.id, name=renamed),
            update_mask=FieldMask(paths=["name"]),
        )
    )
    assert await _ids(b, name, "4.2") == [elsewhere]
    assert await _ids(b, renamed, "4.2") == [first]
    # Deleted: the name means nothing any more.
    await b.delete_custom_field(v1.DeleteCustomFieldRequest(caller=ADMIN, field_id=other.id))
    with pytest.raises(InvalidArgument, match="no custom field named"):
        await _ids(b, name, "4.2")
    assert await _ids(b, renamed, "4.2") == [first]


@pytest.mark.parametrize(
    ("reference", "refusal", "extra"),
    [
        (term(v1.SearchField.COMPONENT, v1.SearchOperator.EQ, 987654321), "no component 98", 0),
        (term(v1.SearchField.HOTLIST, v1.SearchOperator.EQ, 987654321), "no hotlist 98", 0),
        (
            term(v1.SearchField.COMPONENT, v1.SearchOperator.EQ, "zq-nowhere"),
            "no component named",
            1,
        ),
    ],
    ids=["component-id", "hotlist-id", "component-name"],
)
async def test_a_refused_reference_on_a_cached_catalog_runs_the_page_once(
    bugless_model_backend: PostgresBackend,  # the database, migrated
    model_settings: ModelSettings,
    reference: v1.SearchNode,
    refusal: str,
    extra: int,
) -> None:
    """A component or hotlist refusal is final: the page statement is not run again.

    A refusal of the cached catalog's compile is tried again on the current
    definitions (they may have changed); a reference the page's statement
    found unseen was read with the catalog checked fresh, so reloading the
    catalog and running the page again would read the same refusal.
    """
    one = await PostgresBackend.open(
        dataclasses.replace(model_settings, pool_min_size=1, pool_max_size=1)
    )
    try:
        tag = uuid.uuid4().hex[:8]
        name = f"Seen At {tag}"
        component = await one.create_component(
            v1.CreateComponentRequest(caller=ADMIN, name=f"ref-{tag}")
        )
        await one.create_custom_field(
            v1.CreateCustomFieldRequest(
                caller=ADMIN,
                component_id=component.id,
                name=name,
                type=v1.CustomFieldType.ENUM,
                options=["a"],
            )
        )
        query = v1.StructuredQuery(filter=all_of(_by_name(name, "a"), reference))
        request = v1.SearchIssuesRequest(caller=ADMIN, query=query, summary=True)
        with pytest.raises(InvalidArgument, match=refusal):
            await one.search_issues(request)  # asyncpg's first-use look-ups, out of the logs
        assert await _ids(one, name, "a") == []  # the catalog of this name, now cached
        async with logged_statements(one) as seen:
            with pytest.raises(InvalidArgument, match=refusal):
                await one.search_issues(request)
        # The page (its refs_seen read with the catalog checked fresh), and for
        # a name the look-up of the names the caller may mean; nothing again.
        assert ["refs_seen" in s for s in seen] == [True, *extra * [False]], seen
        assert not [s for s in seen if s.startswith("SELECT * FROM custom_fields")], seen
        # The catalog stays cached: the next search by the name loads nothing.
        async with logged_statements(one) as seen:
            assert await _ids(one, name, "a") == []
        assert len(seen) == 1, seen
    finally:
        await one.close()
