"""A component's issue template through its admin page, through the real stack.

Split from ``test_component_admin`` (whose helpers these use): saving a
template and what the new issue form makes of it, and a refused one coming
back as typed.
"""

from __future__ import annotations

import secrets
from typing import Any

from litestar.testing import AsyncTestClient
from web_support import World, create_component, sign_in, version_of

from bugless_core.clients import call
from bugless_proto import v1


async def test_template_edit_prefills_the_create_form(
    client: AsyncTestClient[Any], dora: str, world: World, model: v1.ModelStub
) -> None:
    token = await sign_in(client, dora)
    component_id = await create_component(client, token, f"Templated {secrets.token_hex(3)}")
    page = await client.get(f"/components/{component_id}")
    saved = await client.post(
        f"/components/{component_id}/template",
        data={
            "_csrf": token,
            "version": version_of(page.text),
            "title": "[templated] ",
            "description": "## What happened",
            "priority": "P1",
            "severity": "",
            "type": "TASK",
            "assignee": "carol",
        },
        follow_redirects=False,
    )
    assert saved.status_code == 303, saved.text
    form = await client.get(f"/issues/new?component={component_id}")
    assert 'value="[templated] "' in form.text
    assert 'value="carol"' in form.text
    assert '<option value="P1" selected>' in form.text
    assert "## What happened" in form.text
    stored = await call(
        model.get_component, v1.GetComponentRequest(caller=world.admin, component_id=component_id)
    )
    assert stored.template is not None
    assert stored.template.assignee == world.users["carol"]
    assert stored.template.type == v1.IssueType.TASK

    unknown = await client.post(
        f"/components/{component_id}/template",
        data={"_csrf": token, "version": str(stored.version), "assignee": "ghost_user"},
    )
    assert unknown.status_code == 400
    assert "ghost_user" in unknown.text


async def test_a_refused_template_comes_back_as_typed_with_the_problem_at_its_field(
    client: AsyncTestClient[Any], dora: str, world: World, model: v1.ModelStub
) -> None:
    """An unknown assignee or priority: the page again, the long description kept; nothing saved."""
    token = await sign_in(client, dora)
    component_id = await create_component(client, token, f"Template {secrets.token_hex(3)}")
    version = version_of((await client.get(f"/components/{component_id}")).text)
    typed = {
        "title": "[Crash] <what crashed>",
        "priority": "P1",
        "severity": "",
        "type": "FEATURE_REQUEST",
        "description": "## Steps\n1. Open it & wait\n",
    }
    for field, value, problem in (
        ("assignee", "nobody_here", "no user named &#39;nobody_here&#39;"),
        ("severity", "S9", "&#39;S9&#39; is not one of s0, s1, s2, s3, s4"),
    ):
        refused = await client.post(
            f"/components/{component_id}/template",
            data={"_csrf": token, "version": version, **typed, field: value},
        )
        assert refused.status_code == 400, refused.text
        html = refused.text.split('<h2 id="template">', 1)[1].split('<h2 id="archive">', 1)[0]
        assert "1 problem to fix before saving" in html
        assert (f'aria-invalid="true" aria-describedby="field-{field}-error" autofocus') in html
        assert f'<span class="field-error" id="field-{field}-error">{problem}</span>' in html
        assert 'value="[Crash] &lt;what crashed&gt;"' in html
        assert '<option value="P1" selected>' in html
        assert '<option value="FEATURE_REQUEST" selected>' in html
        assert ">## Steps\n1. Open it &amp; wait\n</textarea>" in html
        if field == "assignee":
            assert 'value="nobody_here"' in html
    stored = await call(
        model.get_component,
        v1.GetComponentRequest(caller=world.caller(dora), component_id=component_id),
    )
    assert not stored.template or not stored.template.title
