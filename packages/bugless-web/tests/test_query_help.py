"""Help with the query language on the search page: how a query was read, and its terms."""

from __future__ import annotations

import html
import secrets
import urllib.parse
from typing import Any

from litestar.testing import AsyncTestClient
from web_support import PASSWORD, World, sign_in

from bugless_core.clients import call
from bugless_core.search import explain, parse_query
from bugless_core.search.reference import example_queries, field_reference
from bugless_proto import v1
from bugless_web.timezones import TIMEZONE_COOKIE


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


async def test_the_help_page_lists_every_field_operator_and_sort_key_with_explained_examples(
    client: AsyncTestClient[Any],
) -> None:
    """Before, the language was described only in the README, which a web user never sees.

    The page is built from the parser's own tables: every name a query may put
    before ``:`` is on it, each example links to its search and is explained
    as the search page explains it, in the viewer's time zone.
    """
    await sign_in(client, "bob")
    client.cookies.set(TIMEZONE_COOKIE, "Europe/Paris")
    page = await client.get("/search/help")
    assert page.status_code == 200
    text = html.unescape(page.text)
    # Every name the parser takes is in the reference (test_search_reference).
    for name in (n for f in field_reference() for n in f.names):
        assert f"<code>{name}</code>" in text, name
    for operator in (":", "<", "<=", ">", ">=", ":any", ":none", "has:"):
        assert f"<code>{operator}</code>" in text, operator
    for key in ("priority (p)", "stars", "customfield<ID>"):
        assert f"<code>{key}</code>" in text
    for example in example_queries():
        assert f'href="/search?q={urllib.parse.quote_plus(example)}"' in page.text, example
        assert explain(parse_query(example), zone_name="Europe/Paris") in text, example
    assert "modified>today-7 — modified after 7 days ago (Europe/Paris)" in text
    # Whether the description is a comment is said where commenter: is listed.
    assert "the description is the first comment" in text
    assert "commenter:none — has no description and no comment" in text


async def test_the_search_page_links_to_the_help_from_the_box_the_explanation_and_an_error(
    client: AsyncTestClient[Any],
) -> None:
    await sign_in(client, "bob")
    read = await client.get("/search", params={"q": "is:open"})
    refused = await client.get("/search", params={"q": "priority:p9"})
    assert refused.status_code == 400
    for page in (read, refused):
        assert 'class="query-help-link"' in page.text
    assert 'href="/search/help">Search help</a>: every field' in read.text
    error = refused.text.split('class="query-error"', 1)[1].split("</div>", 1)[0]
    assert 'href="/search/help"' in error


async def test_an_unknown_username_is_offered_the_closest_enabled_ones(
    client: AsyncTestClient[Any], world: World
) -> None:
    """``a:alcie`` said only "no user named 'alcie'"; it now asks "did you mean 'alice'?".

    The names come from the look-up the assignee box's autocomplete makes for
    anyone signed in, and a disabled account is not offered (that look-up
    hides it too), however close its name.
    """
    tag = secrets.token_hex(3)
    near, disabled = f"hint{tag}maria", f"hint{tag}marie"
    for username in (near, disabled):
        world.stack.add_user(username, PASSWORD)
    channel = world.stack.auth.channel()
    try:
        auth = v1.AuthenticatorStub(channel)
        admin = await call(
            auth.authenticate_password,
            v1.AuthenticatePasswordRequest(username="alice", password=PASSWORD),
        )
        await call(
            auth.set_user_disabled,
            v1.SetUserDisabledRequest(token=admin.token, username=disabled, disabled=True),
        )
    finally:
        channel.close()
    await sign_in(client, "bob")

    typo = await client.get("/search", params={"q": "is:open a:alcie"})
    assert typo.status_code == 400
    assert "no user named 'alcie'; did you mean 'alice'?" in html.unescape(typo.text)
    assert "<mark>alcie</mark>" in typo.text  # the name is still the marked term

    close = html.unescape((await client.get("/search", params={"q": f"cc:hint{tag}marei"})).text)
    assert f"no user named 'hint{tag}marei'; did you mean '{near}'?" in close
    assert disabled not in close.split("did you mean", 1)[1].split("</p>", 1)[0]

    far = html.unescape((await client.get("/search", params={"q": "r:qqqzzzxxx"})).text)
    assert "no user named 'qqqzzzxxx'" in far
    assert "did you mean" not in far
