"""Custom fields as list columns through the web: the picker, sorting, CSV headers, big trees.

Split from ``test_custom_fields`` (which keeps the admin pages, the issue page and form,
create and bulk edit); the set-up helpers are that module's.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from test_custom_fields import _component, _define, _issue
from web_support import World, sign_in

from bugless_core.clients import call
from bugless_proto import v1
from bugless_web import custom_fields
from bugless_web.searching import DEFAULT_COLUMNS, read_mask


async def test_a_custom_field_is_a_sortable_list_column_and_a_csv_column(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    component = await _component(model, world)
    csrf = await sign_in(client, "alice")
    name = f"Effort {secrets.token_hex(3)}"
    effort = await _define(client, csrf, component.id, name=name, type="integer")
    owner = await _define(client, csrf, component.id, name="Owner", type="user")
    for title, value in (("Small job", "2"), ("Big job", "30")):
        issue = await _issue(model, world, component.id, title)
        await call(
            model.change_issue,
            v1.ChangeIssueRequest(
                caller=world.admin,
                issue_id=issue.id,
                expected_version=issue.version,
                delta=v1.IssueDelta(
                    custom_fields_set=[
                        v1.CustomFieldValue(field_id=effort, values=[value]),
                        v1.CustomFieldValue(field_id=owner, values=[world.users["carol"]]),
                    ]
                ),
            ),
        )
    columns = f"id,title,customfield{effort},customfield{owner}"
    query = f"componentid:{component.id} sort:-customfield{effort}"
    page = await client.get("/search", params={"q": query, "columns": columns})
    assert page.status_code == 200
    header = page.text.split("<thead>", 1)[1].split("</thead>", 1)[0]
    assert f"{name} &#9660;" in header  # sorted by it, descending (▼)
    assert f"sort%3Acustomfield{effort}" in header  # the header toggles to ascending
    body = page.text.split("<tbody>", 1)[1]
    assert body.index("Big job") < body.index("Small job")
    assert f'<td class="col-customfield{owner}" data-label="Owner">' in body
    assert "carol" in body.split(f'class="col-customfield{owner}"', 1)[1].split("</td>", 1)[0]
    # The picker offers the page's custom fields.
    assert f'value="customfield{effort}" checked' in page.text
    export = await client.get("/search.csv", params={"q": query, "columns": columns})
    lines = export.text.splitlines()
    assert lines[0] == f"ID,Title,{name},Owner"
    assert lines[1].endswith(",Big job,30,carol")


async def test_the_picker_offers_the_fields_of_the_pages_components_without_asking_values(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """Rows carry custom values only for a custom column shown; the picker needs none."""
    component = await _component(model, world)
    csrf = await sign_in(client, "alice")
    name = f"Rollout {secrets.token_hex(3)}"
    rollout = await _define(client, csrf, component.id, name=name, type="text")
    await _issue(model, world, component.id, "No value set yet")
    assert "custom_fields" not in read_mask(DEFAULT_COLUMNS).paths
    assert "custom_fields" in read_mask((*DEFAULT_COLUMNS, f"customfield{rollout}")).paths
    query = f"componentid:{component.id}"
    page = await client.get("/search", params={"q": query, "columns": "id,title"})
    assert page.status_code == 200
    picker = page.text.split('class="columns-form"', 1)[1].split("</form>", 1)[0]
    assert f'value="customfield{rollout}"> {name}</label>' in picker  # offered, not chosen
    assert f"col-customfield{rollout}" not in page.text
    # Chosen, its header is the field's name although no row has a value.
    chosen = await client.get(
        "/search", params={"q": query, "columns": f"id,title,customfield{rollout}"}
    )
    header = chosen.text.split("<thead>", 1)[1].split("</thead>", 1)[0]
    assert name in header
    assert f'value="customfield{rollout}" checked' in chosen.text


async def test_a_chosen_custom_column_is_named_also_when_no_row_is_of_its_component(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """Before, an empty result's header, and its CSV's, said ``customfield<ID>``."""
    component = await _component(model, world)
    csrf = await sign_in(client, "alice")
    name = f"Window {secrets.token_hex(3)}"
    window = await _define(client, csrf, component.id, name=name, type="text")
    query = f"componentid:{component.id}"
    columns = f"id,customfield{window},customfield999999"
    page = await client.get("/search", params={"q": query, "columns": columns})
    assert page.status_code == 200
    header = page.text.split("<thead>", 1)[1].split("</thead>", 1)[0]
    assert name in header
    assert f"customfield{window}<" not in header
    assert "customfield999999" in header  # no such field: its key, not an error
    export = await client.get("/search.csv", params={"q": query, "columns": columns})
    assert export.text.splitlines() == [f"ID,{name},customfield999999"]


async def test_a_user_fields_history_shows_people_also_after_the_field_is_deleted(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """The change says its field is a USER field, so the timeline needs no definition."""
    component = await _component(model, world)
    csrf = await sign_in(client, "alice")
    field_id = await _define(client, csrf, component.id, name="Reviewer", type="user")
    issue = await _issue(model, world, component.id, "Reviewed by a person")
    await call(
        model.change_issue,
        v1.ChangeIssueRequest(
            caller=world.admin,
            issue_id=issue.id,
            expected_version=issue.version,
            delta=v1.IssueDelta(
                custom_fields_set=[
                    v1.CustomFieldValue(field_id=field_id, values=[world.users["carol"]])
                ]
            ),
        ),
    )
    fields = await call(
        model.list_custom_fields,
        v1.ListCustomFieldsRequest(caller=world.admin, component_id=component.id),
    )
    version = next(f.version for f in fields.custom_fields if f.id == field_id)
    deleted = await client.post(
        f"/components/{component.id}/fields/{field_id}/delete",
        data={"_csrf": csrf, "version": str(version)},
        follow_redirects=False,
    )
    assert deleted.status_code == 303, deleted.text
    html = (await client.get(f"/issues/{issue.id}")).text
    history = html.split('id="entries"', 1)[1].split('id="edit"', 1)[0]
    change = history.split('<span class="field">Reviewer</span>', 1)[1].split("</li>", 1)[0]
    assert "Carol Coder" in change
    assert world.users["carol"] not in change


async def test_the_fields_of_every_leaf_are_named_on_a_tree_past_one_round(
    client: AsyncTestClient[Any],
    world: World,
    model: v1.ModelStub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before, only the first 500 leaves by id were asked: a later one's field was unnamed.

    The round is made 2 components here, so the shared world's tree (many
    more leaves than that) is past it, and the fresh component, the newest
    leaf, is in the last round.
    """
    monkeypatch.setattr(custom_fields, "FIELD_COMPONENTS_PER_ROUND", 2)
    component = await _component(model, world)
    csrf = await sign_in(client, "alice")
    name = f"Late {secrets.token_hex(3)}"
    late = await _define(client, csrf, component.id, name=name, type="text")
    query = f"componentid:{component.id}"
    export = await client.get(
        "/search.csv", params={"q": query, "columns": f"id,customfield{late}"}
    )
    assert export.status_code == 200
    assert export.text.splitlines() == [f"ID,{name}"]
