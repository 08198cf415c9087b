"""Global permissions asked of the Authenticator (hotlists), and the username suggestions."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from web_support import SESSION_KEY, World, sign_in

from bugless_dev.stack import RunningService
from bugless_web import WebSettings, create_app


@pytest.fixture(scope="module")
def strict_auth(world: World) -> Iterator[RunningService]:
    """An Authenticator whose policy grants create_hotlist to nobody but admins."""
    extra = world.stack.start_auth(
        name="auth-no-hotlists",
        policy={"admins": ["admin"], "component-creators": ["create_component"]},
    )
    try:
        yield extra
    finally:
        world.stack.stop_service(extra)


@pytest.fixture
async def strict_client(
    world: World, strict_auth: RunningService
) -> AsyncIterator[AsyncTestClient[Litestar]]:
    assert strict_auth.address is not None
    settings = WebSettings(
        model=world.stack.model, auth=strict_auth.address, session_keys=(SESSION_KEY,), dev=True
    )
    async with AsyncTestClient(create_app(settings), base_url="http://testserver.local") as client:
        yield client


async def test_hotlist_creation_without_the_permission_is_a_403_page_saying_why(
    strict_client: AsyncTestClient[Any],
) -> None:
    token = await sign_in(strict_client, "bob")
    index = await strict_client.get("/hotlists")
    assert 'action="/hotlists"' not in index.text
    assert "needs the <code>create_hotlist</code> permission" in index.text

    response = await strict_client.post(
        "/hotlists", data={"_csrf": token, "name": "Not allowed"}, follow_redirects=False
    )

    assert response.status_code == 403
    assert "Creating a hotlist needs the create_hotlist permission" in response.text
    assert "Not allowed" not in (await strict_client.get("/hotlists")).text


async def test_admins_may_create_hotlists_under_the_same_policy(
    strict_client: AsyncTestClient[Any],
) -> None:
    token = await sign_in(strict_client, "alice")
    assert 'action="/hotlists"' in (await strict_client.get("/hotlists")).text
    response = await strict_client.post(
        "/hotlists", data={"_csrf": token, "name": "Admin list"}, follow_redirects=False
    )
    assert response.status_code == 303


async def test_suggestions_are_json_for_signed_in_people_only(
    client: AsyncTestClient[Any],
) -> None:
    signed_out = await client.get("/suggest/users?q=car")
    assert signed_out.status_code == 401
    assert signed_out.headers["content-type"].startswith("application/json")
    assert "sign in" in signed_out.json()["error"]

    await sign_in(client, "bob")
    found = await client.get("/suggest/users?q=car")
    assert found.status_code == 200
    assert found.headers["cache-control"] == "private, no-store"
    assert {"username": "carol", "display_name": "Carol Coder"} in found.json()
    by_display_name = await client.get("/suggest/users?q=Bob%20B")
    assert [p["username"] for p in by_display_name.json()] == ["bob"]
    assert (await client.get("/suggest/users?q=")).json() == []
    assert (await client.get("/suggest/users?q=" + "z" * 500)).json() == []
    assert (await client.get("/suggest/users?q=zzzz-nobody")).json() == []


async def test_people_fields_carry_the_suggest_hook_and_stay_plain_inputs(
    client: AsyncTestClient[Any], world: World
) -> None:
    await sign_in(client, "bob")
    form = await client.get(f"/issues/new?component={world.components['Platform']}")
    assignee = re.search(r'<input name="assignee"[^>]*>', form.text)
    assert assignee
    assert 'data-suggest="users"' in assignee.group(0)
    assert 'type="' not in assignee.group(0)  # a plain text input without JavaScript
    assert 'name="cc"' in form.text
    assert 'data-suggest-multiple="true"' in form.text
