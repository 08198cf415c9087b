"""Each status the web answers with an error page has a title of its own.

The error page's title is what a tab or a screen reader says first; "Cannot
do that" (the fallback) said nothing of a deleted file or a body too large.
Through the real app on the session's Model. (The 408 of a stalled upload's
page is checked where it is made to stall, :mod:`test_transfer_deadlines`.)
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from pathlib import Path
from typing import Any

from litestar.testing import AsyncTestClient
from web_support import World, create_issue, sign_in

from bugless_dev.processes import spawn
from bugless_proto import v1
from bugless_web import WebSettings, create_app


def _title_of(page: str) -> str:
    return page.split("<title>", 1)[1].split(" &middot;", 1)[0]


async def test_a_deleted_attachment_is_gone_by_its_title(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    issue = await create_issue(model, world, "A titled error page")
    csrf = await sign_in(client, "bob")
    uploaded = await client.post(
        f"/issues/{issue.id}/attachments",
        content=b"hello",
        headers={"x-csrf-token": csrf, "x-file-name": "a.txt", "content-type": "text/plain"},
    )
    assert uploaded.status_code == 201, uploaded.text
    created = uploaded.json()
    deleted = await client.post(
        f"/attachments/{created['id']}/delete", data={"_csrf": csrf}, follow_redirects=False
    )
    assert deleted.status_code == 303
    gone = await client.get(created["url"])
    assert gone.status_code == 410
    assert _title_of(gone.text) == "Gone"


async def test_a_body_too_large_is_titled_so(client: AsyncTestClient[Any]) -> None:
    # A form over the server's body limit (10 MB). `/device/start`'s 413 is
    # JSON, as every error of `bugless login`'s endpoints (test_device_endpoint_errors).
    response = await client.post(
        "/signin",
        content=b"username=" + b"x" * 10_000_000,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 413
    assert _title_of(response.text) == "Too large"


async def test_an_unknown_address_and_a_forms_address_say_what_to_do(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """Not the router's bare "Not Found" / "Method Not Allowed" under a "Not allowed" title."""
    issue = await create_issue(model, world, "Errors that say what to do")
    await sign_in(client, "bob")
    unknown = await client.get("/isues/1")
    assert unknown.status_code == 404
    assert "There is no page at this address. Check the link" in unknown.text
    assert ">Not Found<" not in unknown.text
    # A form's address opened as a page (a refused bulk edit's page reloaded
    # from the address bar, a link to a star button's action).
    for address in ("/issues/bulk", f"/issues/{issue.id}/star"):
        opened = await client.get(address)
        assert opened.status_code == 405
        assert _title_of(opened.text) == "Not a page"  # was "Not allowed", as for a 403
        assert "This address takes a form&#39;s submission; it is not a page to open." in (
            opened.text
        )
        assert "Method Not Allowed" not in opened.text
    star = await client.get(f"/issues/{issue.id}/star")
    assert f'<a href="/issues/{issue.id}" class="button primary">Back to issue {issue.id}</a>' in (
        star.text
    )
    # A refusal of the service keeps its own reason.
    assert "issue 999999999 not found" in (await client.get("/issues/999999999")).text


#: ``bugless model serve`` of a release without ListHotlists.
MODEL_WITHOUT_HOTLIST_LISTING = ("-m", "bugless_testing.older_model", "ListHotlists")


async def test_a_model_older_than_the_web_is_named_to_be_upgraded_on_the_page(
    world: World, web_settings: WebSettings, tmp_path: Path
) -> None:
    """A page whose Model lacks the method it calls says which, and what to upgrade (501).

    The Model answers a method of a later release than its own as a server
    that does not serve it (MethodNotServed, docs/upgrades.md); the page shows
    that reason under its own title. Before, it was a 5xx like any failure:
    "Something went wrong", "The server could not finish this request.", and
    nobody looking at the page could tell an upgrade done out of order.
    """
    stack = world.stack
    ready = tmp_path / "model-without-hotlist-listing.json"
    process = spawn(
        "model-without-hotlist-listing",
        [
            sys.executable,
            *MODEL_WITHOUT_HOTLIST_LISTING,
            *("model", "serve", "--port", "0", "--ready-file", str(ready)),
        ],
        stack.env,
        tmp_path / "model-without-hotlist-listing.log",
        ready_file=ready,
    )
    older = await asyncio.to_thread(stack.wait_started, "model", process)
    try:
        settings = dataclasses.replace(
            web_settings, model=dataclasses.replace(web_settings.model, port=older.port)
        )
        async with AsyncTestClient(
            create_app(settings), base_url="http://testserver.local"
        ) as client:
            await sign_in(client, "bob")
            page = await client.get("/hotlists")
            home = await client.get("/")  # served: the rest of the web works
    finally:
        await asyncio.to_thread(stack.stop_service, older)
    assert page.status_code == 501, page.text
    assert _title_of(page.text) == "Not available"
    assert (
        "the Model does not serve ListHotlists, so it is of a release older than its "
        "caller&#39;s: upgrade the Model first, as docs/upgrades.md orders"
    ) in page.text
    assert "could not finish this request" not in page.text
    assert home.status_code == 200, home.text
