"""Help with the query language on the search page: how a query was read, and its terms."""

from __future__ import annotations

import html
from typing import Any

from litestar.testing import AsyncTestClient
from web_support import sign_in


def _explanation(page: str) -> str:
    shown = page.split('<details class="explain">', 1)[1].split("</pre>", 1)[0]
    return html.unescape(shown)


async def test_the_explanation_says_what_the_issue_is_or_has(
    client: AsyncTestClient[Any],
) -> None:
    """``star:bob`` read "a starrer is bob": each term now reads as a sentence about the issue."""
    await sign_in(client, "bob")
    page = await client.get(
        "/search", params={"q": "star:bob a:none commenter:me votecount>2 blockingid:any"}
    )
    assert page.status_code == 200
    shown = _explanation(page.text)
    assert "star:bob — starred by bob" in shown
    assert "assignee:none — assigned to no one" in shown
    assert "commenter:me — commented on by me (the signed-in user)" in shown
    assert "votecount>2 — has more than 2 stars" in shown
    assert "blockingid:any — blocks another issue" in shown
    assert "a starrer" not in shown
