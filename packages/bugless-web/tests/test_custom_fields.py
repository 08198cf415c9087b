"""Custom fields through the web: admin pages, the issue page and form, create, bulk, search."""

from __future__ import annotations

import re
import secrets
from typing import Any

from custom_field_support import define_field, file_issue, fresh_component
from litestar.testing import AsyncTestClient
from web_support import World, issue_form_of, sign_in

from bugless_core.clients import call
from bugless_proto import v1


def _values(issue: v1.Issue) -> dict[int, list[str]]:
    return {v.field_id: list(v.values) for v in issue.custom_fields}


async def test_admins_define_fields_of_every_type_and_the_subtree_inherits_them(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    parent = await fresh_component(model, world)
    child = await call(
        model.create_component,
        v1.CreateComponentRequest(caller=world.admin, parent_id=parent.id, name="Leaf"),
    )
    csrf = await sign_in(client, "alice")
    empty = await client.get(f"/components/{parent.id}/fields")
    assert "new-field-form" in empty.text
    assert "fields-admins-only" not in empty.text
    found_in = await define_field(
        client,
        csrf,
        parent.id,
        name="Found In",
        type="enum",
        options="4.1\n4.2\n5.0",
        default="4.2",
        required="yes",
    )
    oses = await define_field(
        client, csrf, parent.id, name="OS", type="multi-enum", options="linux\nmac"
    )
    notes = await define_field(client, csrf, parent.id, name="Notes", type="text")
    cost = await define_field(client, csrf, parent.id, name="Cost", type="integer")
    due = await define_field(client, csrf, parent.id, name="Due", type="date")
    owner = await define_field(client, csrf, child.id, name="Owner", type="user", default="carol")
    page = await client.get(f"/components/{child.id}/fields")
    assert page.status_code == 200
    for field_id in (found_in, oses, notes, cost, due, owner):
        assert f'id="field-{field_id}"' in page.text
    assert f'href="/components/{parent.id}/fields"' in page.text  # inherited, defined above
    row = page.text.split(f'id="field-{owner}"', 1)[1].split("</tr>", 1)[0]
    assert "carol" in row  # a user default reads as the username
    assert "user" in row
    fields = await call(
        model.list_custom_fields,
        v1.ListCustomFieldsRequest(caller=world.admin, component_id=child.id),
    )
    by_id = {f.id: f for f in fields.custom_fields}
    assert by_id[found_in].required
    assert by_id[found_in].default_values == ["4.2"]
    assert by_id[oses].type is v1.CustomFieldType.ENUM_MULTI
    assert by_id[owner].default_values == [world.users["carol"]]
    # Rename and change the default; the version guards it.
    version = by_id[cost].version
    changed = await client.post(
        f"/components/{parent.id}/fields/{cost}",
        data={"_csrf": csrf, "version": str(version), "name": "Cost (h)", "default": "3"},
        follow_redirects=False,
    )
    assert changed.status_code == 303, changed.text
    stale = await client.post(
        f"/components/{parent.id}/fields/{cost}",
        data={"_csrf": csrf, "version": str(version), "name": "Cost again"},
    )
    assert stale.status_code == 409
    # An inherited field is changed where it is defined.
    elsewhere = await client.post(
        f"/components/{child.id}/fields/{cost}",
        data={"_csrf": csrf, "version": str(version + 1), "name": "x"},
    )
    assert elsewhere.status_code == 400
    assert f"defined on component {parent.id}" in elsewhere.text


async def test_non_admins_see_the_fields_but_cannot_define_them(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    component = await fresh_component(model, world)
    csrf = await sign_in(client, "bob")
    page = await client.get(f"/components/{component.id}/fields")
    assert page.status_code == 200
    assert "new-field-form" not in page.text
    # Who may, instead of a page that only lacks the form.
    assert 'id="fields-admins-only"' in page.text
    assert "Only admins define and change custom fields" in page.text
    assert "Your role here: Editor." in page.text
    refused = await client.post(
        f"/components/{component.id}/fields",
        data={"_csrf": csrf, "name": "Sneaky", "type": "text"},
    )
    assert refused.status_code == 403
    bad_type = await client.post(
        f"/components/{component.id}/fields",
        data={"_csrf": csrf, "name": "Odd", "type": "colour"},
    )
    assert bad_type.status_code == 400
    assert "multi-enum" in bad_type.text


async def test_a_refused_definition_shows_the_form_again_as_typed_with_the_reason(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """A default that does not fit, or a name taken: the page again, not a bare error page.

    It used to answer "That did not work (400)" with the request's path
    (``default_values: ...``) and a link home, and what was typed was gone.
    """
    component = await fresh_component(model, world)
    csrf = await sign_in(client, "alice")
    typed = {
        "name": "Story points",
        "type": "integer",
        "description": "How big",
        "options": "",
        "default": "lots",
        "required": "yes",
    }
    refused = await client.post(f"/components/{component.id}/fields", data={"_csrf": csrf, **typed})
    assert refused.status_code == 400
    page = refused.text
    assert 'id="new-field-form"' in page
    assert "1 problem to fix before saving" in page
    error = re.search(r'<span class="field-error" id="field-default-error">([^<]*)</span>', page)
    assert error, page
    assert "takes a whole number, not &#39;lots&#39;" in error.group(1)
    assert "default_values" not in page
    assert 'name="default" value="lots"' in page
    assert 'aria-invalid="true" aria-describedby="field-default-error" autofocus' in page
    assert 'name="name" value="Story points"' in page
    assert 'name="description" value="How big"' in page
    assert '<option value="integer" selected>' in page
    assert 'name="required" value="yes" checked' in page
    listed = await call(
        model.list_custom_fields,
        v1.ListCustomFieldsRequest(caller=world.admin, component_id=component.id),
    )
    assert list(listed.custom_fields) == []  # nothing was defined

    await define_field(client, csrf, component.id, name="Story points", type="integer")
    taken = await client.post(
        f"/components/{component.id}/fields",
        data={"_csrf": csrf, "name": "story POINTS", "type": "text"},
    )
    assert taken.status_code == 400
    assert re.search(r'id="field-name-error">[^<]*also named', taken.text), taken.text
    assert 'name="name" value="story POINTS"' in taken.text


async def test_a_refused_change_of_a_field_shows_its_form_open_as_typed(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    component = await fresh_component(model, world)
    csrf = await sign_in(client, "alice")
    points = await define_field(client, csrf, component.id, name="Points", type="integer")
    page = (await client.get(f"/components/{component.id}/fields")).text
    version = re.search(
        rf'action="/components/{component.id}/fields/{points}" method="post".*?'
        r'name="version" value="(\d+)"',
        page,
        re.S,
    )
    assert version, page
    refused = await client.post(
        f"/components/{component.id}/fields/{points}",
        data={
            "_csrf": csrf,
            "version": version.group(1),
            "name": "Points (renamed)",
            "description": "Effort",
            "default": "many",
        },
    )
    assert refused.status_code == 400
    page = refused.text
    assert f'<details class="field-edit" id="edit-field-{points}" open>' in page
    error = re.search(rf'id="edit-{points}-default-error">([^<]*)<', page)
    assert error, page
    assert "takes a whole number, not &#39;many&#39;" in error.group(1)
    assert f'href="#edit-{points}-default"' in page  # the summary links to the field
    assert 'name="name" value="Points (renamed)"' in page
    assert 'name="default" value="many"' in page
    assert "default_values" not in page
    listed = await call(
        model.list_custom_fields,
        v1.ListCustomFieldsRequest(caller=world.admin, component_id=component.id),
    )
    assert [(f.name, f.description) for f in listed.custom_fields] == [("Points", "")]


async def test_values_show_on_the_issue_and_change_through_the_versioned_form(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    component = await fresh_component(model, world)
    csrf = await sign_in(client, "alice")
    found_in = await define_field(
        client, csrf, component.id, name="Found In", type="enum", options="4.1\n4.2"
    )
    oses = await define_field(
        client, csrf, component.id, name="OS", type="multi-enum", options="linux\nmac"
    )
    cost = await define_field(client, csrf, component.id, name="Cost", type="integer")
    owner = await define_field(client, csrf, component.id, name="Owner", type="user")
    issue = await file_issue(model, world, component.id, "Custom values on the page")
    page = await client.get(f"/issues/{issue.id}")
    form = issue_form_of(page.text)
    assert form["cf_fields"] == f"{found_in} {oses} {cost} {owner}"
    form.update(
        {"_csrf": csrf, f"cf_{found_in}": "4.2", f"cf_{cost}": "17", f"cf_{owner}": "carol"}
    )
    data: dict[str, Any] = {**form, f"cf_{oses}": ["linux", "mac"]}
    saved = await client.post(f"/issues/{issue.id}", data=data, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    now = await call(model.get_issue, v1.GetIssueRequest(caller=world.admin, issue_id=issue.id))
    assert _values(now) == {
        found_in: ["4.2"],
        oses: ["linux", "mac"],
        cost: ["17"],
        owner: [world.users["carol"]],
    }
    html = (await client.get(f"/issues/{issue.id}")).text
    aside = html.split('class="fields"', 1)[1]
    assert re.search(rf'data-field="{cost}"><span class="value">17</span>', aside)
    assert "Carol Coder" in aside.split(f'class="cf-value" data-field="{owner}"', 1)[1]
    history = html.split('id="entries"', 1)[1]
    assert '<span class="field">Found In</span>' in history
    assert '<span class="field">Owner</span>' in history
    # A bad integer is a 400 naming the field; nothing is written.
    form = issue_form_of(html)
    form.update({"_csrf": csrf, f"cf_{cost}": "seventeen"})
    bad = await client.post(f"/issues/{issue.id}", data=form)
    assert bad.status_code == 400
    assert f'id="field-cf_{cost}-error"' in bad.text
    assert "whole number" in bad.text
    assert 'value="seventeen"' in bad.text
    assert (
        await call(model.get_issue, v1.GetIssueRequest(caller=world.admin, issue_id=issue.id))
    ).version == now.version


async def test_moving_an_issue_to_a_component_requiring_a_field_asks_for_it_in_the_form(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """The move is refused until the field is given, and the form offers the field.

    The form showed the issue's own component's fields only: the Model's
    refusal was a bare 400 page (the comment typed lost), and no form could
    ever give the destination's field, so the web could not move the issue.
    """
    here = await fresh_component(model, world)
    there = await fresh_component(model, world)
    csrf = await sign_in(client, "alice")
    cause = await define_field(
        client, csrf, there.id, name="Root cause", type="text", required="yes"
    )
    issue = await file_issue(model, world, here.id, "Move me where a cause is required")
    form = issue_form_of((await client.get(f"/issues/{issue.id}")).text)
    assert f"cf_{cause}" not in form
    form.update({"_csrf": csrf, "component_id": str(there.id), "comment": "Belongs over there"})
    refused = await client.post(f"/issues/{issue.id}", data=form)
    assert refused.status_code == 400
    assert 'id="issue-form"' in refused.text
    assert "Belongs over there" in refused.text
    problem = re.search(rf'id="field-cf_{cause}-error"[^>]*>(.*?)<', refused.text, re.S)
    assert problem, refused.text
    assert "is required" in problem.group(1)
    unchanged = await call(
        model.get_issue, v1.GetIssueRequest(caller=world.admin, issue_id=issue.id)
    )
    assert (unchanged.component_id, unchanged.version) == (here.id, issue.version)
    again = issue_form_of(refused.text)
    assert again["component_id"] == str(there.id)
    again.update({"_csrf": csrf, f"cf_{cause}": "a loose cable", "comment": "Belongs over there"})
    moved = await client.post(f"/issues/{issue.id}", data=again, follow_redirects=False)
    assert moved.status_code == 303, moved.text
    now = await call(model.get_issue, v1.GetIssueRequest(caller=world.admin, issue_id=issue.id))
    assert now.component_id == there.id
    assert _values(now) == {cause: ["a loose cable"]}


async def test_a_stale_form_keeps_my_custom_change_and_their_other_changes(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    component = await fresh_component(model, world)
    csrf = await sign_in(client, "alice")
    notes = await define_field(client, csrf, component.id, name="Notes", type="text")
    cost = await define_field(client, csrf, component.id, name="Cost", type="integer")
    issue = await file_issue(model, world, component.id, "Stale custom edit")
    form = issue_form_of((await client.get(f"/issues/{issue.id}")).text)
    await call(
        model.change_issue,
        v1.ChangeIssueRequest(
            caller=world.caller("carol"),
            issue_id=issue.id,
            expected_version=issue.version,
            delta=v1.IssueDelta(
                custom_fields_set=[v1.CustomFieldValue(field_id=cost, values=["5"])]
            ),
        ),
    )
    form.update({"_csrf": csrf, f"cf_{notes}": "mine"})
    conflict = await client.post(f"/issues/{issue.id}", data=form)
    assert conflict.status_code == 409
    again = issue_form_of(conflict.text)
    assert again[f"cf_{notes}"] == "mine"
    assert again[f"cf_{cost}"] == "5"
    again["_csrf"] = csrf
    applied = await client.post(f"/issues/{issue.id}", data=again, follow_redirects=False)
    assert applied.status_code == 303, applied.text
    now = await call(model.get_issue, v1.GetIssueRequest(caller=world.admin, issue_id=issue.id))
    assert _values(now) == {notes: ["mine"], cost: ["5"]}


async def test_the_create_form_shows_defaults_and_sends_values(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    component = await fresh_component(model, world)
    csrf = await sign_in(client, "alice")
    found_in = await define_field(
        client,
        csrf,
        component.id,
        name="Found In",
        type="enum",
        options="4.1\n4.2",
        default="4.1",
        required="yes",
    )
    due = await define_field(client, csrf, component.id, name="Due", type="date")
    page = await client.get("/issues/new", params={"component": str(component.id)})
    assert '<option value="4.1" selected>4.1</option>' in page.text
    assert f'name="cf_{due}"' in page.text
    template = await client.get("/issues/new/template", params={"component": str(component.id)})
    assert f'name="cf_{found_in}"' in template.json()["custom_fields_html"]
    form = {
        "_csrf": csrf,
        "component_id": str(component.id),
        "title": "Made with custom values",
        "priority": "P2",
        "severity": "S2",
        "type": "BUG",
        "idempotency_key": secrets.token_hex(8),
        "cf_fields": f"{found_in} {due}",
        f"cf_{found_in}": "4.2",
        f"cf_{due}": "2026-13-01",
    }
    bad = await client.post("/issues/new", data=form)
    assert bad.status_code == 400
    assert f'id="field-cf_{due}-error"' in bad.text
    assert "YYYY-MM-DD" in bad.text
    form[f"cf_{due}"] = "2026-12-24"
    made = await client.post("/issues/new", data=form, follow_redirects=False)
    assert made.status_code == 303, made.text
    issue_id = int(made.headers["location"].rsplit("/", 1)[1])
    issue = await call(model.get_issue, v1.GetIssueRequest(caller=world.admin, issue_id=issue_id))
    assert _values(issue) == {found_in: ["4.2"], due: ["2026-12-24"]}


async def test_a_required_field_left_empty_on_create_shows_the_form_with_the_reason_there(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """A required field without a default, left empty: the form again, nothing created.

    The Model's refusal names the field by metadata (its path is the whole
    custom_fields list): the page was the bare 400 error page, the title and
    description typed into the form gone.
    """
    component = await fresh_component(model, world)
    csrf = await sign_in(client, "alice")
    cause = await define_field(
        client, csrf, component.id, name="Root cause", type="text", required="yes"
    )
    form = {
        "_csrf": csrf,
        "component_id": str(component.id),
        "title": "Needs its root cause",
        "description": "A long description worth keeping",
        "priority": "P2",
        "severity": "S2",
        "type": "BUG",
        "idempotency_key": secrets.token_hex(8),
        "cf_fields": str(cause),
        f"cf_{cause}": "",
    }
    refused = await client.post("/issues/new", data=form)
    assert refused.status_code == 400
    assert 'id="create-form"' in refused.text
    assert "A long description worth keeping" in refused.text
    assert 'value="Needs its root cause"' in refused.text
    problem = re.search(rf'id="field-cf_{cause}-error"[^>]*>(.*?)<', refused.text, re.S)
    assert problem, refused.text
    assert "&#39;Root cause&#39;" in problem.group(1)
    assert "is required" in problem.group(1)
    assert "custom_fields:" not in refused.text
    listed = await client.get("/search", params={"q": f"componentid:{component.id}"})
    assert re.findall(r'class="open-link">(\d+)<', listed.text) == []
    form[f"cf_{cause}"] = "a bad cable"
    made = await client.post("/issues/new", data=form, follow_redirects=False)
    assert made.status_code == 303, made.text
    listed = await client.get("/search", params={"q": f"componentid:{component.id}"})
    assert len(re.findall(r'class="open-link">(\d+)<', listed.text)) == 1


async def test_bulk_edit_search_and_sort_by_a_custom_field(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    component = await fresh_component(model, world)
    csrf = await sign_in(client, "alice")
    name = f"Build {secrets.token_hex(3)}"
    build = await define_field(client, csrf, component.id, name=name, type="integer")
    issues = [await file_issue(model, world, component.id, f"Bulk custom {n}") for n in range(3)]
    page = await client.get("/search", params={"q": f"componentid:{component.id}"})
    assert f'<option value="{build}:INTEGER">' in page.text
    response = await client.post(
        "/issues/bulk",
        data={
            "_csrf": csrf,
            "q": "",
            "issue": [f"{i.id}:{i.version}" for i in issues[:2]],
            "custom_field": f"{build}:INTEGER",
            "custom_value": "42",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    await call(
        model.change_issue,
        v1.ChangeIssueRequest(
            caller=world.admin,
            issue_id=issues[2].id,
            expected_version=issues[2].version,
            delta=v1.IssueDelta(
                custom_fields_set=[v1.CustomFieldValue(field_id=build, values=["7"])]
            ),
        ),
    )
    found = await client.get("/search", params={"q": f'"{name}":42'})
    ids = set(map(int, re.findall(r'class="open-link">(\d+)<', found.text)))
    assert ids == {issues[0].id, issues[1].id}
    compared = await client.get("/search", params={"q": f"customfield{build}<40"})
    assert set(map(int, re.findall(r'class="open-link">(\d+)<', compared.text))) == {issues[2].id}
    ordered = await client.get(
        "/search",
        params={"q": f"componentid:{component.id} has:customfield{build} sort:customfield{build}"},
    )
    shown = [int(i) for i in re.findall(r'class="open-link">(\d+)<', ordered.text)]
    assert shown[0] == issues[2].id
    assert set(shown) == {i.id for i in issues}


async def test_a_bulk_edit_says_which_issues_a_field_does_not_apply_to(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """A hotlist mixes components: the field is set where it applies, the others say why not.

    The reason names the issue's component by its path, without the request
    path the Model starts it with (it read 'delta.custom_fields_set[0].field_id:
    custom field 7 does not apply to component 12').
    """
    component = await fresh_component(model, world)
    elsewhere = await fresh_component(model, world)
    csrf = await sign_in(client, "alice")
    build = await define_field(client, csrf, component.id, name="Build", type="integer")
    inside = await file_issue(model, world, component.id, "Bulk mixed inside")
    outside = await file_issue(model, world, elsewhere.id, "Bulk mixed outside")
    response = await client.post(
        "/issues/bulk",
        data={
            "_csrf": csrf,
            "q": "",
            "issue": [f"{i.id}:{i.version}" for i in (inside, outside)],
            "custom_field": f"{build}:INTEGER",
            "custom_value": "42",
        },
        follow_redirects=False,
    )
    assert response.status_code == 400
    row = re.search(rf'<a href="/issues/{outside.id}">.*?</tr>', response.text, re.S)
    assert row, response.text
    shown = row.group(0).replace("&gt;", ">").replace("&#39;", "'")
    assert (
        f"Not changed: custom field {build} does not apply to "
        f"'{elsewhere.path}', the issue's component" in shown
    )
    assert "delta." not in response.text
    changed = await call(
        model.get_issue, v1.GetIssueRequest(caller=world.admin, issue_id=inside.id)
    )
    assert _values(changed) == {build: ["42"]}


async def test_deleting_a_field_keeps_its_old_values_readable_in_history(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    component = await fresh_component(model, world)
    csrf = await sign_in(client, "alice")
    field_id = await define_field(client, csrf, component.id, name="Doomed Field", type="text")
    issue = await file_issue(model, world, component.id, "History outlives the field")
    await call(
        model.change_issue,
        v1.ChangeIssueRequest(
            caller=world.admin,
            issue_id=issue.id,
            expected_version=issue.version,
            delta=v1.IssueDelta(
                custom_fields_set=[v1.CustomFieldValue(field_id=field_id, values=["kept value"])]
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
    assert '<span class="field">Doomed Field</span>' in history
    assert "kept value" in history
    assert f"cf_{field_id}" not in html
