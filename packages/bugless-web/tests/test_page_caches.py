"""What every page re-fetches, kept per viewer for a few seconds (against the real stack).

The viewer's own hotlists fill the "add to hotlist" menus of the issue page
and the bulk-edit bar of the search page. They are reused for
``hotlist_cache_seconds`` (long here, so that the test does not depend on the
machine's speed), but a hotlist write the viewer makes through this replica
shows on their very next page. The custom fields of each component (the
issue form, the bulk-edit menu) are reused the same way for
``component_cache_seconds``.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from custom_field_support import define_field, file_issue, fresh_component
from litestar.testing import AsyncTestClient
from web_support import SESSION_KEY, World, create_issue, csrf_of, sign_in

from bugless_core.clients import call
from bugless_proto import v1
from bugless_web import WebSettings


@pytest.fixture
def web_settings(world: World) -> WebSettings:
    """A replica that keeps hotlists, fields and rendered timelines for ten minutes."""
    return WebSettings(
        model=world.stack.model,
        auth=world.stack.auth,
        session_keys=(SESSION_KEY,),
        dev=True,
        component_cache_seconds=600.0,
        hotlist_cache_seconds=600.0,
        timeline_cache_seconds=600.0,
    )


def _option(hotlist: str) -> str:
    return f">{hotlist}</option>"


async def test_hotlists_are_reused_until_the_viewer_changes_one(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    issue = await create_issue(model, world, "Menu cache")
    token = await sign_in(client, "bob")
    tag = secrets.token_hex(4)
    before = await client.get(f"/issues/{issue.id}")
    assert before.status_code == 200
    # Made behind this replica's back (another replica, the API): not seen
    # while the viewer's entry is fresh; the menus come from the cache.
    elsewhere = await call(
        model.create_hotlist,
        v1.CreateHotlistRequest(caller=world.caller("bob"), name=f"Elsewhere {tag}"),
    )
    cached = await client.get(f"/issues/{issue.id}")
    assert _option(elsewhere.name) not in cached.text
    search = await client.get("/search", params={"q": f"id:{issue.id}"})
    assert search.status_code == 200
    assert f"Elsewhere {tag}" not in search.text

    # The viewer's own write through this replica drops their entry at once.
    created = await client.post(
        "/hotlists", data={"_csrf": token, "name": f"Mine {tag}"}, follow_redirects=False
    )
    assert created.status_code == 303
    fresh = await client.get(f"/issues/{issue.id}")
    assert _option(f"Mine {tag}") in fresh.text
    assert _option(elsewhere.name) in fresh.text

    # A rename shows on the next page too (the edit form carries the version).
    hotlist_url = created.headers["location"]
    page = await client.get(hotlist_url)
    version = page.text.split('name="version" value="', 1)[1].split('"', 1)[0]
    renamed = await client.post(
        f"{hotlist_url}/edit",
        data={"_csrf": csrf_of(page.text), "name": f"Renamed {tag}", "version": version},
        follow_redirects=False,
    )
    assert renamed.status_code == 303
    after = await client.get(f"/issues/{issue.id}")
    assert _option(f"Renamed {tag}") in after.text
    assert _option(f"Mine {tag}") not in after.text


async def test_custom_fields_are_reused_until_one_is_defined_through_this_replica(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    component = await fresh_component(model, world)
    csrf = await sign_in(client, "alice")
    first = await define_field(client, csrf, component.id, name="First", type="text")
    issue = await file_issue(model, world, component.id, "Field cache")
    listed = await client.get("/search", params={"q": f"componentid:{component.id}"})
    assert f'<option value="{first}:TEXT">' in listed.text
    # The issue form and the bulk bar both read the viewer's one cached list of
    # every field they see, filtered by the component's ancestry.
    assert f'name="cf_{first}"' in (await client.get(f"/issues/{issue.id}")).text
    # Defined behind this replica's back: the menus come from the cache meanwhile.
    elsewhere = await call(
        model.create_custom_field,
        v1.CreateCustomFieldRequest(
            caller=world.admin,
            component_id=component.id,
            name="Elsewhere",
            type=v1.CustomFieldType.TEXT,
        ),
    )
    cached = await client.get("/search", params={"q": f"componentid:{component.id}"})
    assert f'<option value="{elsewhere.id}:TEXT">' not in cached.text
    assert f'name="cf_{elsewhere.id}"' not in (await client.get(f"/issues/{issue.id}")).text
    # A field defined through this replica shows on the next page, with the other.
    third = await define_field(client, csrf, component.id, name="Third", type="text")
    fresh = await client.get("/search", params={"q": f"componentid:{component.id}"})
    for field_id in (first, elsewhere.id, third):
        assert f'<option value="{field_id}:TEXT">' in fresh.text
    assert f'name="cf_{elsewhere.id}"' in (await client.get(f"/issues/{issue.id}")).text


async def test_the_issue_page_is_never_stored_so_it_carries_no_etag(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """#14: signed-in pages are ``no-store``; a browser keeps no copy to revalidate.

    An ``ETag`` with ``private, no-cache`` would let the browser write the
    page to disk (a shared computer's back button, its cache directory), which
    #14 forbids; with ``no-store`` it would never be sent back. So none.
    """
    issue = await create_issue(model, world, "No etag")
    await sign_in(client, "bob")
    page = await client.get(f"/issues/{issue.id}", headers={"If-None-Match": "*"})
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert "etag" not in page.headers


async def test_a_kept_timeline_shows_a_new_comment_at_once_and_each_session_its_token(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    issue = await create_issue(model, world, "Timeline cache", description="first words")
    token = await sign_in(client, "bob")
    first = await client.get(f"/issues/{issue.id}")
    again = await client.get(f"/issues/{issue.id}")
    assert "first words" in first.text
    assert first.text == again.text  # same version, same reader: the same page
    # bob's own description has its edit form, carrying bob's session token.
    assert f'name="_csrf" value="{token}"' in again.text.split('id="entries"', 1)[1]
    client.cookies.clear()  # a second session (another browser) of the same reader
    other_token = await sign_in(client, "bob")
    page = await client.get(f"/issues/{issue.id}")
    entries = page.text.split('id="entries"', 1)[1].split('id="edit"', 1)[0]
    assert other_token != token
    assert f'value="{other_token}"' in entries
    assert token not in entries
    # A comment made behind this replica's back is a new version: shown at once.
    await call(
        model.change_issue,
        v1.ChangeIssueRequest(
            caller=world.caller("bob"),
            issue_id=issue.id,
            expected_version=issue.version,
            comment="second words",
        ),
    )
    after = await client.get(f"/issues/{issue.id}")
    assert "second words" in after.text
