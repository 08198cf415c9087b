"""After a bulk edit, the person lands on a page of the search that has rows.

A bulk edit goes back to the page it was made on. When the edit took every
row of that page out of the search (closing them all under ``is:open`` on
its last page), that page is empty now: the nearest earlier page with rows
is shown instead, with the edit's notice. Real web app, Model and
Authenticator.
"""

from __future__ import annotations

import re
from typing import Any

from litestar.testing import AsyncTestClient
from web_support import World, bulk_form_fields, create_issue, sign_in

from bugless_proto import v1

_NEXT = re.compile(r'<a rel="next" class="button" href="([^"]+)"')
_ROWS = re.compile(r'name="issue" value="(\d+):(\d+)"')
_CURRENT = re.compile(r'<span class="current" aria-current="page">(\d+)</span>')


async def _next_page(client: AsyncTestClient[Any], html: str) -> str:
    found = _NEXT.search(html)
    assert found is not None, html
    page = await client.get(found.group(1).replace("&amp;", "&"))
    assert page.status_code == 200
    return page.text


async def test_a_bulk_edit_that_empties_its_page_lands_on_the_nearest_page_with_rows(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    for letter in "abcde":
        await create_issue(model, world, f"Emptied quoll {letter}")
    token = await sign_in(client, "bob")
    first = await client.get("/search", params={"q": "quoll is:open", "page_size": "2"})
    second = await _next_page(client, first.text)
    third = await _next_page(client, second)
    assert _CURRENT.findall(third) == ["3"]
    rows = _ROWS.findall(third)
    assert len(rows) == 1, third  # the fifth issue, alone on page 3

    closed = await client.post(
        "/issues/bulk",
        data={
            **bulk_form_fields(third),
            "_csrf": token,
            "issue": [f"{issue_id}:{version}" for issue_id, version in rows],
            "status": "fixed",
        },
        follow_redirects=False,
    )
    assert closed.status_code in (302, 303)
    landed = await client.get(closed.headers["location"])
    assert landed.status_code == 200
    assert _CURRENT.findall(landed.text) == ["2"]
    assert _ROWS.findall(landed.text) == _ROWS.findall(second)
    assert "Changed 1 issue." in landed.text

    # An edit that leaves rows on its page goes back to that very page.
    kept = _ROWS.findall(landed.text)[:1]
    prioritised = await client.post(
        "/issues/bulk",
        data={
            **bulk_form_fields(landed.text),
            "_csrf": token,
            "issue": [f"{issue_id}:{version}" for issue_id, version in kept],
            "priority": "P1",
        },
        follow_redirects=False,
    )
    back = await client.get(prioritised.headers["location"])
    assert _CURRENT.findall(back.text) == ["2"]
    assert len(_ROWS.findall(back.text)) == 2
