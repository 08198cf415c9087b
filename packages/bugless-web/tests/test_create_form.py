"""The create form keeps what was typed when a component (and its template) is picked."""

from __future__ import annotations

import re
from typing import Any

from litestar.testing import AsyncTestClient
from web_support import World, sign_in


def _value(html: str, name: str) -> str:
    match = re.search(rf'<input name="{name}" value="([^"]*)"', html)
    assert match, f"no {name} field"
    return match.group(1)


def _selected(html: str, name: str) -> str:
    body = re.search(rf'<select name="{name}"[^>]*>(.*?)</select>', html, re.S)
    assert body, f"no {name} select"
    chosen = re.search(r'<option value="([^"]*)" selected>', body.group(1))
    return chosen.group(1) if chosen else ""


async def test_picking_a_component_without_javascript_keeps_typed_fields(
    client: AsyncTestClient[Any], world: World
) -> None:
    token = await sign_in(client, "bob")
    blank = await client.get("/issues/new")
    key = re.search(r'name="idempotency_key" value="([^"]+)"', blank.text)
    assert key
    picked = await client.post(
        "/issues/new",
        data={
            "_csrf": token,
            "idempotency_key": key.group(1),
            "use_template": "1",
            "shown_template": "",
            "component_id": str(world.components["Platform>Storage"]),
            "title": "Typed before picking",
            "description": "Typed description",
            "priority": "P2",  # untouched default: the template's P1 replaces it
            "severity": "S0",  # changed by the person: kept
            "type": "BUG",
            "assignee": "",
            "cc": "carol",
        },
    )
    assert picked.status_code == 200, picked.text
    assert _value(picked.text, "title") == "Typed before picking"
    assert "Typed description</textarea>" in picked.text
    assert _value(picked.text, "cc") == "carol"
    assert _selected(picked.text, "severity") == "S0"
    assert _selected(picked.text, "priority") == "P1"
    assert _selected(picked.text, "component_id") == str(world.components["Platform>Storage"])
    # The same key travels on, so the eventual create is still idempotent.
    assert f'name="idempotency_key" value="{key.group(1)}"' in picked.text
    # Nothing was created by picking.
    search = await client.get("/search", params={"q": '"Typed before picking"'})
    assert "Typed before picking</a>" not in search.text


async def test_untouched_fields_follow_the_newly_picked_template(
    client: AsyncTestClient[Any], world: World
) -> None:
    token = await sign_in(client, "bob")
    storage = world.components["Platform>Storage"]
    # The page showed Storage's template; nothing was edited; now Platform is picked.
    moved = await client.post(
        "/issues/new",
        data={
            "_csrf": token,
            "use_template": "1",
            "shown_template": str(storage),
            "component_id": str(world.components["Platform"]),
            "title": "[storage] ",
            "description": "## Steps to reproduce\n\n## Expected\n",
            "priority": "P1",
            "severity": "S2",
            "type": "BUG",
        },
    )
    assert moved.status_code == 200
    assert _value(moved.text, "title") == ""
    assert _selected(moved.text, "priority") == "P2"
    assert "Steps to reproduce" not in moved.text.split('name="description"', 1)[1]


async def test_template_endpoint_answers_json_for_visible_components_only(
    client: AsyncTestClient[Any], world: World
) -> None:
    await sign_in(client, "bob")
    storage = await client.get(
        "/issues/new/template", params={"component": str(world.components["Platform>Storage"])}
    )
    assert storage.status_code == 200
    body = storage.json()
    assert body["values"]["title"] == "[storage] "
    assert body["values"]["priority"] == "P1"
    assert body["description"] == "Disks and databases"
    hidden = await client.get(
        "/issues/new/template", params={"component": str(world.components["Secret"])}
    )
    assert hidden.status_code == 404
