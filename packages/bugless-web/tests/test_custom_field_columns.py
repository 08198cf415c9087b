"""Custom fields as list columns through the web: the picker, sorting, CSV headers, big trees.

Split from ``test_custom_fields`` (which keeps the admin pages, the issue page and form,
create and bulk edit); the set-up helpers are that module's.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from typing import Any

from custom_field_support import define_field, file_issue, fresh_component
from litestar.testing import AsyncTestClient
from web_support import SESSION_KEY, World, grpc_calls, own_model_replica, sign_in

from bugless_core.clients import acting_as, call
from bugless_core.limits import MAX_COMPONENT_PAGE_SIZE, MAX_PAGE_SIZE
from bugless_proto import v1
from bugless_web import WebSettings, create_app, custom_fields
from bugless_web.backends import Backends, Viewer
from bugless_web.result_columns import DEFAULT_COLUMNS, read_mask


async def test_a_custom_field_is_a_sortable_list_column_and_a_csv_column(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    component = await fresh_component(model, world)
    csrf = await sign_in(client, "alice")
    name = f"Effort {secrets.token_hex(3)}"
    effort = await define_field(client, csrf, component.id, name=name, type="integer")
    owner = await define_field(client, csrf, component.id, name="Owner", type="user")
    for title, value in (("Small job", "2"), ("Big job", "30")):
        issue = await file_issue(model, world, component.id, title)
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
    component = await fresh_component(model, world)
    csrf = await sign_in(client, "alice")
    name = f"Rollout {secrets.token_hex(3)}"
    rollout = await define_field(client, csrf, component.id, name=name, type="text")
    await file_issue(model, world, component.id, "No value set yet")
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
    component = await fresh_component(model, world)
    csrf = await sign_in(client, "alice")
    name = f"Window {secrets.token_hex(3)}"
    window = await define_field(client, csrf, component.id, name=name, type="text")
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
    component = await fresh_component(model, world)
    csrf = await sign_in(client, "alice")
    field_id = await define_field(client, csrf, component.id, name="Reviewer", type="user")
    issue = await file_issue(model, world, component.id, "Reviewed by a person")
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


async def test_a_column_of_a_field_no_result_row_has_is_named_from_the_viewers_fields(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """An empty result's custom column is named from every field the viewer sees."""
    component = await fresh_component(model, world)
    csrf = await sign_in(client, "alice")
    name = f"Late {secrets.token_hex(3)}"
    late = await define_field(client, csrf, component.id, name=name, type="text")
    query = f"componentid:{component.id}"
    export = await client.get(
        "/search.csv", params={"q": query, "columns": f"id,customfield{late}"}
    )
    assert export.status_code == 200
    assert export.text.splitlines() == [f"ID,{name}"]


async def test_the_fields_of_a_large_tree_take_one_call_a_page_not_one_a_component(
    world: World, model: v1.ModelStub
) -> None:
    """Before, every leaf of the viewer's tree was asked: 600 more leaves, 600 more calls.

    Counted on a Model replica of the test's own. Bob sees 600 new leaves under
    a parent he cannot view (whose field applies to them), and not a sibling
    that holds another field; what he is offered is what asking each leaf of
    his tree gives (the old way, computed here), in as many calls as his
    fields fill pages of 500, and none more within the cache period.
    """
    parent = await call(
        model.create_component,
        v1.CreateComponentRequest(
            caller=world.admin,
            name=f"Wide{secrets.token_hex(4)}",
            acl=[
                v1.AclEntry(principal=v1.Principal(user=world.users["alice"]), role=v1.Role.ADMIN)
            ],
        ),
    )
    bob = v1.AclEntry(principal=v1.Principal(user=world.users["bob"]), role=v1.Role.VIEWER)

    async def leaf(number: int, acl: list[v1.AclEntry]) -> v1.Component:
        return await call(
            model.create_component,
            v1.CreateComponentRequest(
                caller=world.admin, parent_id=parent.id, name=f"leaf{number}", acl=acl
            ),
        )

    leaves: list[v1.Component] = []
    for start in range(0, 600, 50):
        leaves += await asyncio.gather(*(leaf(n, [bob]) for n in range(start, start + 50)))
    hidden = await leaf(600, [])

    async def define(component_id: int) -> v1.CustomField:
        return await call(
            model.create_custom_field,
            v1.CreateCustomFieldRequest(
                caller=world.admin,
                component_id=component_id,
                name=f"Wide {secrets.token_hex(3)}",
                type=v1.CustomFieldType.TEXT,
            ),
        )

    inherited = await define(parent.id)
    on_leaves = [await define(leaves[n].id) for n in (0, 299, 599)]
    not_bobs = await define(hidden.id)

    viewer = _viewer(world, "bob")
    with acting_as(world.stack.assertion_for(world.users["bob"])):
        tree = await _all_components(model, viewer.caller)
        parents = {c.parent_id for c in tree}
        old_way: dict[int, v1.CustomField] = {}
        leaf_ids = [c.id for c in tree if c.id not in parents]
        for start in range(0, len(leaf_ids), 100):
            answers = await asyncio.gather(
                *(
                    call(
                        model.list_custom_fields,
                        v1.ListCustomFieldsRequest(caller=viewer.caller, component_id=c),
                    )
                    for c in leaf_ids[start : start + 100]
                )
            )
            old_way.update((f.id, f) for a in answers for f in a.custom_fields)
        pages = -(-len(old_way) // MAX_PAGE_SIZE) or 1

        async with own_model_replica(world.stack, "model-visible-fields") as (address, port):
            settings = WebSettings(
                model=address,
                auth=world.stack.auth,
                session_keys=(SESSION_KEY,),
                dev=True,
                component_cache_seconds=600.0,
            )
            backends = Backends(settings)
            try:
                before = await grpc_calls(port, "ListCustomFields")
                offered = await custom_fields.visible_fields(backends, viewer)
                asked = await grpc_calls(port, "ListCustomFields") - before
                again = await custom_fields.visible_fields(backends, viewer)
                asked_again = await grpc_calls(port, "ListCustomFields") - before - asked
            finally:
                backends.close()

    assert len(leaf_ids) >= 600
    assert asked == pages
    assert asked_again == 0
    assert {f.id for f in offered} == set(old_way)
    assert [f.id for f in offered] == [
        f.id for f in sorted(old_way.values(), key=lambda f: (f.name.casefold(), f.id))
    ]
    assert [f.id for f in again] == [f.id for f in offered]
    ids = {f.id for f in offered}
    assert {inherited.id, *(f.id for f in on_leaves)} <= ids
    assert not_bobs.id not in ids


async def _all_components(model: v1.ModelStub, caller: v1.Caller) -> list[v1.Component]:
    """Every component ``caller`` sees, archived ones included (the web's tree)."""
    found: list[v1.Component] = []
    token = ""
    while True:
        page = await call(
            model.list_components,
            v1.ListComponentsRequest(
                caller=caller,
                include_archived=True,
                page=v1.PageRequest(page_size=MAX_COMPONENT_PAGE_SIZE, page_token=token),
            ),
        )
        found += page.components
        token = page.next_page_token
        if not token:
            return found


def _viewer(world: World, username: str) -> Viewer:
    caller = world.caller(username)
    return Viewer(
        identity=v1.Identity(user=v1.User(user_id=caller.user_id, username=username)),
        caller=caller,
        token="",
    )


async def test_the_search_pages_bulk_fields_take_one_call_however_many_components(
    world: World, model: v1.ModelStub
) -> None:
    """Before, a result page asked each of its components (20 calls), offering only their fields.

    25 rows in 25 components, counted on a Model replica of the test's own:
    24 leaves whose ancestry bob's tree gives are read from one
    ``ListCustomFields`` of every field he sees, and the one under a
    component he cannot view is asked on its own (the tree does not say what
    is above the hidden one): 2 calls, none more within the cache period.
    The menu offers the fields of every row's component, the parent's and the
    hidden one's that apply to them, and not a field of a component without
    a row on the page.
    """
    bob = v1.AclEntry(principal=v1.Principal(user=world.users["bob"]), role=v1.Role.VIEWER)
    alice = v1.AclEntry(principal=v1.Principal(user=world.users["alice"]), role=v1.Role.ADMIN)

    async def component(parent_id: int, name: str, acl: list[v1.AclEntry]) -> v1.Component:
        return await call(
            model.create_component,
            v1.CreateComponentRequest(caller=world.admin, parent_id=parent_id, name=name, acl=acl),
        )

    async def define(component_id: int) -> int:
        made = await call(
            model.create_custom_field,
            v1.CreateCustomFieldRequest(
                caller=world.admin,
                component_id=component_id,
                name=f"Menu {secrets.token_hex(3)}",
                type=v1.CustomFieldType.TEXT,
            ),
        )
        return made.id

    top = await component(0, f"Menu{secrets.token_hex(4)}", [alice, bob])
    leaves = await asyncio.gather(*(component(top.id, f"leaf{n}", []) for n in range(25)))
    hidden = await component(0, f"Hid{secrets.token_hex(4)}", [alice])
    under_hidden = await component(hidden.id, "seen", [bob])
    on_page = [*leaves[:24], under_hidden]
    await asyncio.gather(*(file_issue(model, world, c.id, "Menu row", by="alice") for c in on_page))
    offered = {
        await define(top.id),
        await define(leaves[0].id),
        await define(leaves[23].id),
        await define(hidden.id),
    }
    off_page = await define(leaves[24].id)
    query = " OR ".join(f"componentid:{c.id}" for c in on_page)

    async with own_model_replica(world.stack, "model-bulk-fields") as (address, port):
        settings = WebSettings(
            model=address,
            auth=world.stack.auth,
            session_keys=(SESSION_KEY,),
            dev=True,
            component_cache_seconds=600.0,
        )
        async with AsyncTestClient(create_app(settings), base_url="http://testserver.local") as c:
            await sign_in(c, "bob")
            before = await grpc_calls(port, "ListCustomFields")
            page = await c.get("/search", params={"q": query, "page_size": "50"})
            asked = await grpc_calls(port, "ListCustomFields") - before
            again = await c.get("/search", params={"q": query, "page_size": "50"})
            asked_again = await grpc_calls(port, "ListCustomFields") - before - asked

    assert page.status_code == 200, page.text
    assert page.text.count('class="open-link">') == 25
    menu = page.text.split('<select name="custom_field">', 1)[1].split("</select>", 1)[0]
    shown = {int(m) for m in re.findall(r'<option value="(\d+):TEXT"', menu)}
    assert offered <= shown
    assert off_page not in shown
    assert asked == 2
    assert asked_again == 0
    assert again.text.split('<select name="custom_field">', 1)[1].split("</select>", 1)[0] == menu


async def test_the_issue_form_reads_the_fields_the_search_page_cached_root_first(
    world: World, model: v1.ModelStub
) -> None:
    """Before, the issue form read a cache of its own per component: a call per component.

    Counted on a Model replica of the test's own, after a search page of the
    same rows filled the viewer's one list of every field he sees: the
    forms of two leaves cost no ``ListCustomFields``, and show the fields
    that apply, root's first as the Model lists them (the leaf's field was
    defined first). A component under one bob cannot view is still asked on
    its own, as the search page's menu asks it, so its form too is cached.
    """
    bob = v1.AclEntry(principal=v1.Principal(user=world.users["bob"]), role=v1.Role.EDITOR)
    alice = v1.AclEntry(principal=v1.Principal(user=world.users["alice"]), role=v1.Role.ADMIN)

    async def component(parent_id: int, name: str, acl: list[v1.AclEntry]) -> v1.Component:
        return await call(
            model.create_component,
            v1.CreateComponentRequest(caller=world.admin, parent_id=parent_id, name=name, acl=acl),
        )

    async def define(component_id: int) -> int:
        made = await call(
            model.create_custom_field,
            v1.CreateCustomFieldRequest(
                caller=world.admin,
                component_id=component_id,
                name=f"Form {secrets.token_hex(3)}",
                type=v1.CustomFieldType.TEXT,
            ),
        )
        return made.id

    top = await component(0, f"Form{secrets.token_hex(4)}", [alice, bob])
    first, second = [await component(top.id, f"leaf{n}", []) for n in range(2)]
    hidden = await component(0, f"Hid{secrets.token_hex(4)}", [alice])
    under_hidden = await component(hidden.id, "seen", [bob])
    leaf_field = await define(first.id)
    top_field = await define(top.id)
    hidden_field = await define(hidden.id)
    issues = [
        await file_issue(model, world, c.id, "Form row", by="alice")
        for c in (first, second, under_hidden)
    ]
    query = " OR ".join(f"componentid:{c.id}" for c in (first, second, under_hidden))

    async with own_model_replica(world.stack, "model-form-fields") as (address, port):
        settings = WebSettings(
            model=address,
            auth=world.stack.auth,
            session_keys=(SESSION_KEY,),
            dev=True,
            component_cache_seconds=600.0,
        )
        async with AsyncTestClient(create_app(settings), base_url="http://testserver.local") as c:
            await sign_in(c, "bob")
            listed = await c.get("/search", params={"q": query})
            assert listed.status_code == 200, listed.text
            before = await grpc_calls(port, "ListCustomFields")
            forms = [(await c.get(f"/issues/{issue.id}")).text for issue in issues]
            asked = await grpc_calls(port, "ListCustomFields") - before

    def inputs(page: str) -> list[int]:
        return [int(m) for m in re.findall(r'name="cf_(\d+)"', page)]

    assert inputs(forms[0]) == [top_field, leaf_field]
    assert inputs(forms[1]) == [top_field]
    assert inputs(forms[2]) == [hidden_field]
    assert asked == 0
