"""The search box opens an issue by number: ``301``, ``#301``, ``b/301``."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient
from web_support import World, create_issue, sign_in

from bugless_proto import v1


async def test_a_number_opens_the_issue_in_every_spelling(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    issue = await create_issue(model, world, "Opened straight from the search box")
    await sign_in(client, "bob")
    for spelling in (f"{issue.id}", f"#{issue.id}", f"b/{issue.id}", f"  B/{issue.id} "):
        response = await client.get("/search", params={"q": spelling}, follow_redirects=False)
        assert response.status_code == 303, spelling
        assert response.headers["location"] == f"/issues/{issue.id}"


async def test_a_number_that_is_no_visible_issue_is_searched_as_text(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    secret = await create_issue(model, world, "Hidden by the ACL", by="alice", component="Secret")
    await sign_in(client, "bob")
    for text in ("987654321987", f"#{secret.id}", "b/0", "#99999999999999999999"):
        response = await client.get("/search", params={"q": text}, follow_redirects=False)
        assert response.status_code in (200, 400), text
        assert "Hidden by the ACL" not in response.text
    page = await client.get("/search", params={"q": "987654321987"})
    assert 'class="count">0 issues<' in page.text
