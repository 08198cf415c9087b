"""Form problems are shown next to their fields, marked for assistive technology."""

from __future__ import annotations

import re
from typing import Any

from litestar.testing import AsyncTestClient
from web_support import World, create_issue, sign_in

from bugless_core.clients import call
from bugless_proto import v1


def _tag(html: str, name: str) -> str:
    match = re.search(rf'<(?:input|select|textarea) name="{name}"[^>]*>', html)
    assert match, f"no {name} field"
    return match.group(0)


def _is_invalid(html: str, name: str, element_id: str | None = None) -> str:
    """The message shown next to an invalid field (and it is wired to the field)."""
    tag = _tag(html, name)
    element_id = element_id or f"field-{name}"
    assert 'aria-invalid="true"' in tag, tag
    assert f'aria-describedby="{element_id}-error"' in tag, tag
    message = re.search(rf'<span class="field-error" id="{element_id}-error">([^<]*)</span>', html)
    assert message, f"no message for {name}"
    return message.group(1)


async def test_create_form_marks_each_bad_field_and_focuses_the_first(
    client: AsyncTestClient[Any], world: World
) -> None:
    token = await sign_in(client, "bob")
    response = await client.post(
        "/issues/new",
        data={
            "_csrf": token,
            "component_id": str(world.components["Platform"]),
            "title": "  ",
            "assignee": "ghost_person",
            "cc": "carol nobody_else",
            "priority": "P2",
            "severity": "S2",
            "type": "BUG",
            "description": "kept as typed",
        },
    )
    assert response.status_code == 400
    html = response.text
    assert _is_invalid(html, "title") == "an issue needs a title"
    assert _is_invalid(html, "assignee") == "no user named &#39;ghost_person&#39;"
    assert "nobody_else" in _is_invalid(html, "cc")
    assert "carol" not in _is_invalid(html, "cc")
    assert "autofocus" in _tag(html, "title")  # the first invalid field
    assert "autofocus" not in _tag(html, "assignee")
    assert "aria-invalid" not in _tag(html, "description")
    assert "kept as typed</textarea>" in html
    # The summary links to each field.
    assert 'href="#field-title">Title</a>' in html
    assert 'href="#field-assignee">Assignee</a>' in html


async def test_edit_form_shows_malformed_and_refused_values_next_to_their_fields(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    issue = await create_issue(model, world, "Edited with mistakes")
    token = await sign_in(client, "bob")
    page = await client.get(f"/issues/{issue.id}")
    assert "aria-invalid" not in page.text
    base = {
        "_csrf": token,
        "version": str(issue.version),
        "title": issue.title,
        "status": "NEW",
        "priority": "P2",
        "severity": "S2",
        "type": "BUG",
        "component_id": str(issue.component_id),
        "comment": "my comment survives",
    }
    typed = await client.post(
        f"/issues/{issue.id}",
        data={**base, "parent_id": "the big one", "verifier": "ghost_person"},
    )
    assert typed.status_code == 400
    assert "is not a positive id" in _is_invalid(typed.text, "parent_id")
    assert 'value="the big one"' in _tag(typed.text, "parent_id")
    assert "ghost_person" in _is_invalid(typed.text, "verifier")
    assert "autofocus" in _tag(typed.text, "verifier")  # verifier comes before parent
    assert "my comment survives</textarea>" in typed.text
    # A parent the Model does not know: its refusal lands on the parent field, not a 404 page.
    refused = await client.post(f"/issues/{issue.id}", data={**base, "parent_id": "987654321"})
    assert refused.status_code == 400
    assert "987654321 not found" in _is_invalid(refused.text, "parent_id")
    assert "autofocus" in _tag(refused.text, "parent_id")
    itself = await client.post(f"/issues/{issue.id}", data={**base, "blocking_ids": str(issue.id)})
    assert itself.status_code == 400
    assert "cannot block itself" in _is_invalid(itself.text, "blocking_ids")
    unchanged = await call(
        model.get_issue, v1.GetIssueRequest(caller=world.admin, issue_id=issue.id)
    )
    assert unchanged.version == issue.version
