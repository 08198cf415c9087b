"""Creating components and editing their access lists, through the real stack.

Their issue templates are ``test_component_templates``'s; lists stored before
the Model refused a principal named twice are ``test_component_acl_duplicates``'s.

Dora is in ``component-creators`` (the stack's policy grants that group
``create_component``); bob and carol are plain users; alice is a global admin.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from web_support import World, create_component, create_issue, sign_in, version_of

from bugless_core.clients import call
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask
from bugless_web import WebSettings, create_app


@pytest.fixture
async def other_client(web_settings: WebSettings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """A second browser (its own app, channels and cookie jar)."""
    async with AsyncTestClient(
        create_app(web_settings), base_url="http://testserver.local"
    ) as second:
        yield second


async def test_top_level_component_needs_the_create_component_permission(
    client: AsyncTestClient[Any],
) -> None:
    token = await sign_in(client, "bob")
    tree = await client.get("/components")
    assert 'href="/components/new"' not in tree.text

    form = await client.get("/components/new")
    assert form.status_code == 403
    assert "needs the create_component permission" in form.text
    created = await client.post("/components", data={"_csrf": token, "name": "Bobland"})
    assert created.status_code == 403
    assert "create_component" in created.text
    assert "Bobland" not in (await client.get("/components")).text


async def test_creator_becomes_admin_and_shares_it_through_the_acl(
    client: AsyncTestClient[Any], other_client: AsyncTestClient[Any], dora: str, world: World
) -> None:
    token = await sign_in(client, dora)
    tree = await client.get("/components")
    assert 'href="/components/new"' in tree.text
    assert "You become its admin" in (await client.get("/components/new")).text
    name = f"Dora area {secrets.token_hex(3)}"
    component_id = await create_component(client, token, name)
    page = await client.get(f"/components/{component_id}")
    assert "Access control" in page.text
    assert "Dora Creator" in page.text  # her own admin entry

    bob = other_client
    await sign_in(bob, "bob")
    assert (await bob.get(f"/components/{component_id}")).status_code == 404

    saved = await client.post(
        f"/components/{component_id}/acl",
        data={
            "_csrf": token,
            "version": version_of(page.text),
            "principal": f"userid:{world.users['dora']}",
            "role": "admin",
            "new_kind": "user",
            "new_name": "bob",
            "new_role": "editor",
        },
        follow_redirects=False,
    )
    assert saved.status_code == 303, saved.text
    page = await client.get(f"/components/{component_id}")
    assert "Bob Builder" in page.text
    assert "Saved the access list (2 entries)." in page.text

    seen = await bob.get(f"/components/{component_id}")
    assert seen.status_code == 200
    assert "Access control" not in seen.text  # an editor, not an admin
    assert "New subcomponent" not in seen.text


async def test_a_refused_name_brings_the_create_form_back_with_what_was_typed(
    client: AsyncTestClient[Any], dora: str, world: World, model: v1.ModelStub
) -> None:
    """A taken or empty name: the form again, input kept, the problem at its field."""
    token = await sign_in(client, dora)
    name = f"Taken {secrets.token_hex(3)}"
    parent_id = await create_component(client, token, name)
    await create_component(client, token, "Child", parent_id)
    listing = v1.ListComponentsRequest(caller=world.caller(dora))
    before = [c.path for c in (await call(model.list_components, listing)).components]

    for parent, typed in ((0, name.upper()), (parent_id, "child"), (0, "   ")):
        refused = await client.post(
            "/components",
            data={
                "_csrf": token,
                "name": typed,
                "description": "Disks & <blobs>",
                "parent_id": parent,
            },
        )
        assert refused.status_code == (400 if not typed.strip() else 409), refused.text
        html = refused.text
        assert '<form action="/components" method="post"' in html
        assert f'name="parent_id" value="{parent}"' in html
        assert 'value="Disks &amp; &lt;blobs&gt;"' in html
        assert 'aria-invalid="true" aria-describedby="field-name-error" autofocus' in html
        if typed.strip():
            assert f'value="{typed}"' in html
            assert "already exists" in html
            assert "name: a component" not in html  # the field shows which one
        else:
            assert "give the component a name" in html
        assert "1 problem to fix before saving" in html
        if parent:
            assert f"New subcomponent of {name}" in html
    after = [c.path for c in (await call(model.list_components, listing)).components]
    assert after == before


async def test_group_entries_roles_and_removal(
    client: AsyncTestClient[Any], dora: str, world: World, model: v1.ModelStub
) -> None:
    token = await sign_in(client, dora)
    component_id = await create_component(client, token, f"Groups {secrets.token_hex(3)}")
    page = await client.get(f"/components/{component_id}")
    await client.post(
        f"/components/{component_id}/acl",
        data={
            "_csrf": token,
            "version": version_of(page.text),
            "principal": f"userid:{world.users['dora']}",
            "role": "admin",
            "new_kind": "group",
            "new_name": "qa",
            "new_role": "viewer",
        },
    )
    page = await client.get(f"/components/{component_id}")
    assert "group <code>qa</code>" in page.text
    await client.post(
        f"/components/{component_id}/acl",
        data={
            "_csrf": token,
            "version": version_of(page.text),
            "principal": [f"userid:{world.users['dora']}", "group:qa"],
            "role": ["admin", "remove"],
        },
    )
    stored = await call(
        model.get_component,
        v1.GetComponentRequest(caller=world.admin, component_id=component_id),
    )
    assert [(e.principal.user if e.principal else "", e.role) for e in stored.acl] == [
        (world.users["dora"], v1.Role.ADMIN)
    ]


async def test_a_group_named_with_spaces_is_added_as_typed(
    client: AsyncTestClient[Any], dora: str, world: World, model: v1.ModelStub
) -> None:
    """Directory groups often have spaces (``Domain Users``; LDAP's ``Sales, EMEA``).

    The form refused any group name with a space, though the Model takes
    one and sign-ins record them so: such a group could be granted only from
    the CLI. A name with a control character is still refused, nothing saved.
    """
    token = await sign_in(client, dora)
    component_id = await create_component(client, token, f"Spaced {secrets.token_hex(3)}")
    group = f"Sales, EMEA {secrets.token_hex(3)}"

    async def add(name: str) -> Any:
        page = await client.get(f"/components/{component_id}")
        return await client.post(
            f"/components/{component_id}/acl",
            data={
                "_csrf": token,
                "version": version_of(page.text),
                "principal": f"userid:{world.users['dora']}",
                "role": "admin",
                "new_kind": "group",
                "new_name": f"  {name} ",
                "new_role": "viewer",
            },
        )

    refused = await add("two\nlines")
    assert refused.status_code == 400
    assert "is not a group name" in refused.text
    await add(group)
    stored = await call(
        model.get_component,
        v1.GetComponentRequest(caller=world.admin, component_id=component_id),
    )
    assert sorted(
        ((e.principal.group or "") if e.principal else "", e.role) for e in stored.acl
    ) == [
        ("", v1.Role.ADMIN),
        (group, v1.Role.VIEWER),
    ]


async def test_a_group_nobody_is_in_is_marked_and_warned_of(
    client: AsyncTestClient[Any], dora: str, world: World
) -> None:
    """A misspelt group was saved and shown like any other while it gave nobody access."""
    token = await sign_in(client, dora)
    component_id = await create_component(client, token, f"Typos {secrets.token_hex(3)}")
    page = await client.get(f"/components/{component_id}")
    assert "acl-empty-groups" not in page.text
    for group in ("component-creatros", "component-creators"):  # a typo, then dora's own
        await client.post(
            f"/components/{component_id}/acl",
            data={
                "_csrf": token,
                "version": version_of(page.text),
                "principal": [f"userid:{world.users['dora']}"]
                + (["group:component-creatros"] if group == "component-creators" else []),
                "role": ["admin"] + (["editor"] if group == "component-creators" else []),
                "new_kind": "group",
                "new_name": group,
                "new_role": "editor",
            },
        )
        page = await client.get(f"/components/{component_id}")

    warning = re.search(r'<p class="banner warn acl-empty-groups"[^>]*>(.*?)</p>', page.text)
    assert warning, page.text
    assert warning.group(1).startswith(
        "Nobody is in group <code>component-creatros</code>: its entry gives no one access. "
        "Check the spelling"
    )
    assert "component-creators</code> <span" in page.text
    row = r'group <code>([^<]+)</code> <span class="muted group-members">· ([^<]+)<'
    counts = dict(re.findall(row, page.text))
    assert counts["component-creatros"] == "nobody"
    # Each entry's role picker says whose role it is (before, every one was "Role").
    assert 'aria-label="Role of group component-creatros"' in page.text
    assert 'aria-label="Role of dora"' in page.text
    assert re.fullmatch(r"\d+ (person|people)", counts["component-creators"]), counts


async def test_acl_form_errors_come_back_in_the_form_naming_the_problem(
    client: AsyncTestClient[Any], dora: str, world: World, model: v1.ModelStub
) -> None:
    """A refused access list: its page again, the form as sent, the reason; nothing saved.

    Before, a 400 error page lost the edit (and offered only "Back to my issues").
    """
    token = await sign_in(client, dora)
    component_id = await create_component(client, token, f"Errors {secrets.token_hex(3)}")
    version = version_of((await client.get(f"/components/{component_id}")).text)
    dora_row, bob_row = f"userid:{world.users['dora']}", f"userid:{world.users['bob']}"
    added = await client.post(
        f"/components/{component_id}/acl",
        data={"_csrf": token, "version": version, "principal": dora_row, "role": "admin"}
        | {"new_name": "bob", "new_role": "viewer"},
        follow_redirects=False,
    )
    assert added.status_code == 303, added.text
    page = (await client.get(f"/components/{component_id}")).text
    version = version_of(page)
    unknown = await client.post(
        f"/components/{component_id}/acl",
        data={
            "_csrf": token,
            "version": version,
            "principal": [dora_row, bob_row],
            "role": ["admin", "editor"],  # bob promoted in the same edit
            "new_name": "nobody_here",
            "new_role": "admin",
        },
    )
    assert unknown.status_code == 400
    html = unknown.text
    assert (
        '<p class="banner error" role="alert" id="acl-problem">'
        "Nothing was saved: no user named &#39;nobody_here&#39;</p>"
    ) in html
    assert (
        'value="nobody_here" placeholder="username or group" aria-label="Username or group name"'
        ' autocomplete="off" data-suggest="users" data-suggest-when="new_kind=user"'
        ' aria-describedby="acl-problem"'
        ' aria-invalid="true" autofocus>'
    ) in html
    bob_select = html.split(f'value="{bob_row}">', 1)[1].split("</select>", 1)[0]
    assert '<option value="editor" selected>' in bob_select  # as sent, not as stored
    new_role = html.split('name="new_role"', 1)[1].split("</select>", 1)[0]
    assert '<option value="admin" selected>' in new_role
    stored = await call(
        model.get_component,
        v1.GetComponentRequest(caller=world.caller(dora), component_id=component_id),
    )
    assert [e.role for e in stored.acl] == [v1.Role.ADMIN, v1.Role.VIEWER]
    bad_role = await client.post(
        f"/components/{component_id}/acl",
        data={"_csrf": token, "version": version, "new_name": "bob", "new_role": "owner"},
    )
    assert bad_role.status_code == 400
    assert "viewer, editor, admin" in bad_role.text
    # Another form on the page still refused by an error page leads back here.
    stale = await client.post(
        f"/components/{component_id}/archive",
        data={"_csrf": token, "version": "1", "archived": "yes"},
    )
    assert stale.status_code == 409
    back = f'<a href="/components/{component_id}" class="button primary">'
    assert f"{back}Back to component {component_id}</a>" in stale.text


async def test_stale_acl_edit_is_a_409_page(client: AsyncTestClient[Any], dora: str) -> None:
    token = await sign_in(client, dora)
    component_id = await create_component(client, token, f"Stale {secrets.token_hex(3)}")
    stale = version_of((await client.get(f"/components/{component_id}")).text)
    first = await client.post(
        f"/components/{component_id}/template",
        data={"_csrf": token, "version": stale, "title": "[first] "},
        follow_redirects=False,
    )
    assert first.status_code == 303
    second = await client.post(
        f"/components/{component_id}/acl",
        data={"_csrf": token, "version": stale, "new_name": "carol", "new_role": "viewer"},
    )
    assert second.status_code == 409
    assert "reload it and apply your change again" in second.text


def _form_version(html: str, form_class: str) -> str:
    """The hidden version of the page's form of ``form_class``."""
    form = html.split(f'class="{form_class}"', 1)[1].split("</form>", 1)[0]
    return version_of(form)


async def test_a_refused_edit_sent_again_after_a_change_meanwhile_is_stale(
    client: AsyncTestClient[Any], dora: str, world: World, model: v1.ModelStub
) -> None:
    """A refused template or access list form comes back at the version it was
    sent at, not the page's current one: corrected and sent again after another
    admin's change, it is the 409 stale page, and that change stays."""
    token = await sign_in(client, dora)
    component_id = await create_component(client, token, f"Meanwhile {secrets.token_hex(3)}")
    sent_at = version_of((await client.get(f"/components/{component_id}")).text)
    theirs = v1.IssueTemplate(title="[theirs] ")
    await call(
        model.update_component,
        v1.UpdateComponentRequest(
            caller=world.caller(dora),
            component=v1.Component(id=component_id, template=theirs),
            update_mask=FieldMask(paths=["template"]),
            expected_version=int(sent_at),
        ),
    )
    refused = await client.post(
        f"/components/{component_id}/template",
        data={"_csrf": token, "version": sent_at, "title": "[mine] ", "assignee": "nobody_here"},
    )
    assert refused.status_code == 400
    assert _form_version(refused.text, "issue-form template-form") == sent_at
    assert _form_version(refused.text, "acl-form") == str(int(sent_at) + 1)  # not refused
    kept = _form_version(refused.text, "issue-form template-form")
    again = await client.post(
        f"/components/{component_id}/template",
        data={"_csrf": token, "version": kept, "title": "[mine] "},
    )
    assert again.status_code == 409
    acl_refused = await client.post(
        f"/components/{component_id}/acl",
        data={"_csrf": token, "version": sent_at, "new_name": "nobody_here"},
    )
    assert acl_refused.status_code == 400
    assert "Nothing was saved:" in acl_refused.text
    assert _form_version(acl_refused.text, "acl-form") == sent_at
    kept = _form_version(acl_refused.text, "acl-form")
    acl_again = await client.post(
        f"/components/{component_id}/acl",
        data={"_csrf": token, "version": kept, "new_name": "carol", "new_role": "viewer"},
    )
    assert acl_again.status_code == 409
    stored = await call(
        model.get_component,
        v1.GetComponentRequest(caller=world.caller(dora), component_id=component_id),
    )
    assert stored.template is not None
    assert stored.template.title == "[theirs] "
    carol = world.caller("carol").user_id
    assert all(entry.principal is None or entry.principal.user != carol for entry in stored.acl)


async def test_a_refused_form_of_an_admin_who_lost_the_role_says_so(
    client: AsyncTestClient[Any], dora: str, world: World, model: v1.ModelStub
) -> None:
    """An admin's access list or template form, refused (an unknown user) after
    their admin role ended: 403 with the reason, not a 400 page without the
    form, where the refusal was shown."""
    token = await sign_in(client, dora)
    component_id = await create_component(client, token, f"Demoted {secrets.token_hex(3)}")
    version = version_of((await client.get(f"/components/{component_id}")).text)
    editor = v1.AclEntry(principal=v1.Principal(user=world.users["dora"]), role=v1.Role.EDITOR)
    await call(
        model.update_component,
        v1.UpdateComponentRequest(
            caller=world.admin,
            component=v1.Component(id=component_id, acl=[editor]),
            update_mask=FieldMask(paths=["acl"]),
            expected_version=int(version),
        ),
    )
    for form, data, what in (
        ("acl", {"new_name": "nobody_here"}, "its access list"),
        ("template", {"assignee": "nobody_here"}, "its issue template"),
    ):
        refused = await client.post(
            f"/components/{component_id}/{form}",
            data={"_csrf": token, "version": version, **data},
        )
        assert refused.status_code == 403, form
        assert "admin role on component" in refused.text
        assert f"needed to change {what}; nothing was saved" in refused.text


async def test_subcomponents_need_admin_on_the_parent(
    client: AsyncTestClient[Any], other_client: AsyncTestClient[Any], world: World
) -> None:
    platform = world.components["Platform"]  # open: bob is an editor there
    token = await sign_in(client, "bob")
    form = await client.get(f"/components/new?parent={platform}")
    assert form.status_code == 403
    assert "needs the admin role" in form.text
    refused = await client.post(
        "/components", data={"_csrf": token, "name": "Sneaky", "parent_id": platform}
    )
    assert refused.status_code == 403
    assert "admin role on component Platform needed" in refused.text

    alice = other_client
    admin_token = await sign_in(alice, "alice")
    page = await alice.get(f"/components/{platform}")
    assert f'href="/components/new?parent={platform}"' in page.text
    assert (
        "New subcomponent of Platform"
        in (await alice.get(f"/components/new?parent={platform}")).text
    )
    name = f"Network {secrets.token_hex(3)}"
    child = await create_component(alice, admin_token, name, platform)
    created = await alice.get(f"/components/{child}")
    assert f"Platform&gt;{name}" in created.text or f"Platform>{name}" in created.text


async def test_non_admins_cannot_change_acl_or_template(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    storage = world.components["Platform>Storage"]
    await create_issue(model, world, "Keeps the page non-empty", component="Platform>Storage")
    token = await sign_in(client, "carol")
    page = await client.get(f"/components/{storage}")
    assert "Save access list" not in page.text
    for path in ("acl", "template"):
        response = await client.post(
            f"/components/{storage}/{path}",
            data={"_csrf": token, "new_name": "carol", "new_role": "admin", "title": "x"},
        )
        assert response.status_code == 403, path
        assert "admin role on component Platform&gt;Storage needed" in response.text


async def test_removing_your_own_admin_access_needs_the_explicit_box(
    client: AsyncTestClient[Any], dora: str, world: World, model: v1.ModelStub
) -> None:
    """Only a global admin could give it back, so it is never a side effect."""
    token = await sign_in(client, dora)
    component_id = await create_component(client, token, f"Keep {secrets.token_hex(3)}")
    dora_row = f"userid:{world.users['dora']}"
    hand_over = {
        "_csrf": token,
        "principal": dora_row,
        "role": "remove",
        "new_kind": "user",
        "new_name": "bob",
        "new_role": "admin",
    }
    version = version_of((await client.get(f"/components/{component_id}")).text)
    refused = await client.post(
        f"/components/{component_id}/acl", data={**hand_over, "version": version}
    )
    assert refused.status_code == 409
    assert "remove your own admin access" in refused.text
    stored = await call(
        model.get_component, v1.GetComponentRequest(caller=world.admin, component_id=component_id)
    )
    assert [e.principal.user for e in stored.acl if e.principal] == [world.users["dora"]]

    # Admin through a group she is in counts: her own entry may go.
    via_group = await client.post(
        f"/components/{component_id}/acl",
        data={
            "_csrf": token,
            "version": version,
            "principal": dora_row,
            "role": "remove",
            "new_kind": "group",
            "new_name": "component-creators",
            "new_role": "admin",
        },
        follow_redirects=False,
    )
    assert via_group.status_code == 303, via_group.text

    page = await client.get(f"/components/{component_id}")
    assert "I may remove my own admin access" in page.text
    leave = await client.post(
        f"/components/{component_id}/acl",
        data={
            "_csrf": token,
            "version": version_of(page.text),
            "principal": "group:component-creators",
            "role": "remove",
            "new_kind": "user",
            "new_name": "bob",
            "new_role": "admin",
            "leave_admin": "yes",
        },
        follow_redirects=False,
    )
    assert leave.status_code == 303, leave.text  # saved, although she can no longer see it
    assert (await client.get(f"/components/{component_id}")).status_code == 404
    stored = await call(
        model.get_component, v1.GetComponentRequest(caller=world.admin, component_id=component_id)
    )
    assert [e.principal.user for e in stored.acl if e.principal] == [world.users["bob"]]
