"""The create form keeps what was typed when a component (and its template) is picked."""

from __future__ import annotations

import html
import re
import secrets
from typing import Any

from litestar.testing import AsyncTestClient
from web_support import World, sign_in

from bugless_core.clients import call
from bugless_proto import v1


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


async def test_a_create_form_with_files_needs_its_token_and_makes_nothing_without_it(
    client: AsyncTestClient[Any], world: World
) -> None:
    """The streamed form checks the token among its fields, before creating or storing."""
    await sign_in(client, "bob")
    refused = await client.post(
        "/issues/new/with-files",
        data={"component_id": str(world.components["Platform"]), "title": "Forged with files"},
        files={"attachments": ("x.txt", b"forged", "text/plain")},
        follow_redirects=False,
    )
    assert refused.status_code == 403, refused.text
    search = await client.get("/search", params={"q": '"Forged with files"'})
    assert "Forged with files</a>" not in search.text


async def test_a_plain_form_to_the_streamed_create_is_refused_unread(
    client: AsyncTestClient[Any], world: World
) -> None:
    """The streamed route takes a body of any size: a urlencoded one is not read for a token."""
    token = await sign_in(client, "bob")
    refused = await client.post(
        "/issues/new/with-files",
        data={
            "_csrf": token,
            "component_id": str(world.components["Platform"]),
            "title": "Not multipart",
        },
        follow_redirects=False,
    )
    assert refused.status_code == 400, refused.text
    assert "this form is sent as multipart/form-data" in html.unescape(refused.text)
    search = await client.get("/search", params={"q": '"Not multipart"'})
    assert "Not multipart</a>" not in search.text


async def test_a_resubmitted_create_form_attaches_its_files_once(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """The same form sent twice (a browser's retry) is one issue, and one copy of each file."""
    token = await sign_in(client, "bob")
    form = {
        "_csrf": token,
        "idempotency_key": secrets.token_hex(8),
        "component_id": str(world.components["Platform"]),
        "title": "Filed twice with a file",
        "priority": "P2",
        "severity": "S2",
        "type": "BUG",
    }
    first = await client.post(
        "/issues/new/with-files",
        data=form,
        files={"attachments": ("log.txt", b"first and only", "text/plain")},
        follow_redirects=False,
    )
    assert first.status_code == 303, first.text
    page = (await client.get(first.headers["location"])).text
    issue_id = int(first.headers["location"].rsplit("/", 1)[-1])
    assert f"Created issue {issue_id} with 1 file attached." in page

    again = await client.post(
        "/issues/new/with-files",
        data=form,
        files={"attachments": ("log.txt", b"first and only", "text/plain")},
        follow_redirects=False,
    )

    assert again.headers.get("location") == first.headers["location"]
    page = html.unescape((await client.get(again.headers["location"])).text)
    assert (
        f"This form had already created issue {issue_id}, which has changed since: its files "
        "were not attached again." in page
    )
    listed = await call(
        model.list_attachments,
        v1.ListAttachmentsRequest(caller=world.caller("bob"), issue_id=issue_id),
    )
    assert [a.name for a in listed.attachments] == ["log.txt"]


async def test_a_long_description_in_a_script_of_many_bytes_is_filed_with_a_file(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """The streamed form takes any description the Model does, whatever its bytes.

    The Model bounds a description in characters (65,536); the streamed form
    bounded each field at 64 KiB of UTF-8, so 25,000 characters of Japanese
    (75,000 bytes), which the plain form and the API file, were a 400 page
    there, the form and what was typed gone.
    """
    token = await sign_in(client, "bob")
    description = "語" * 25_000
    filed = await client.post(
        "/issues/new/with-files",
        data={
            "_csrf": token,
            "idempotency_key": secrets.token_hex(8),
            "component_id": str(world.components["Platform"]),
            "title": "Filed in Japanese with a file",
            "priority": "P2",
            "severity": "S2",
            "type": "BUG",
            "description": description,
        },
        files={"attachments": ("trace.txt", b"trace", "text/plain")},
        follow_redirects=False,
    )
    assert filed.status_code == 303, filed.text
    issue_id = int(filed.headers["location"].rsplit("/", 1)[-1])
    issue = await call(
        model.get_issue, v1.GetIssueRequest(caller=world.caller("bob"), issue_id=issue_id)
    )
    assert issue.description == description
    listed = await call(
        model.list_attachments,
        v1.ListAttachmentsRequest(caller=world.caller("bob"), issue_id=issue_id),
    )
    assert [a.name for a in listed.attachments] == ["trace.txt"]
