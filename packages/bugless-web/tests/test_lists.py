"""Result lists: numbered pages both ways, remembered columns, CSV export."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import html as html_lib
import io
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from web_support import SESSION_KEY, World, create_issue, sign_in

from bugless_proto import v1
from bugless_web import WebSettings, create_app
from bugless_web.result_columns import COLUMNS_COOKIE


async def _many(model: v1.ModelStub, world: World, word: str, count: int) -> list[int]:
    made: list[int] = []
    for start in range(0, count, 25):
        batch = await asyncio.gather(
            *(
                create_issue(model, world, f"{word} number {n}")
                for n in range(start, min(count, start + 25))
            )
        )
        made.extend(i.id for i in batch)
    return made


def _ids(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'class="open-link">(\d+)<', page)]


def _href(page: str, pattern: str) -> str:
    match = re.search(pattern, page)
    assert match, f"no link matching {pattern}"
    return html_lib.unescape(match.group(1))


async def test_pages_go_forward_back_and_by_number(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    made = await _many(model, world, "wombat", 60)
    await sign_in(client, "bob")
    first = await client.get("/search", params={"q": "wombat", "page_size": "25"})
    assert 'aria-current="page">1<' in first.text
    assert "page 1 of 3" in first.text
    assert 'rel="prev"' not in first.text
    second = await client.get(_href(first.text, r'rel="next" class="button" href="([^"]+)"'))
    assert "page 2 of 3" in second.text
    third = await client.get(_href(second.text, r'rel="next" class="button" href="([^"]+)"'))
    assert "page 3 of 3" in third.text
    assert 'rel="next"' not in third.text
    pages = [_ids(first.text), _ids(second.text), _ids(third.text)]
    assert [len(p) for p in pages] == [25, 25, 10]
    assert sorted(i for p in pages for i in p) == sorted(made)
    # Back one page, and straight to page 2 and page 1 by number, from page 3.
    back = await client.get(_href(third.text, r'rel="prev" class="button" href="([^"]+)"'))
    assert _ids(back.text) == pages[1]
    by_number = await client.get(_href(third.text, r'href="([^"]+)" aria-label="Page 2"'))
    assert _ids(by_number.text) == pages[1]
    assert 'aria-current="page">2<' in by_number.text
    one = await client.get(_href(third.text, r'href="([^"]+)" aria-label="Page 1"'))
    assert _ids(one.text) == pages[0]


async def test_a_deployment_sets_the_default_page_size_and_its_menu_offers_it(
    client: AsyncTestClient[Any], web_settings: WebSettings, world: World, model: v1.ModelStub
) -> None:
    made = await _many(model, world, "quokka", 12)
    app = create_app(dataclasses.replace(web_settings, page_size=10))
    async with AsyncTestClient(app, base_url="http://testserver.local") as tens:
        await sign_in(tens, "bob")
        first = await tens.get("/search", params={"q": "quokka"})
        assert len(_ids(first.text)) == 10
        assert "page 1 of 2" in first.text
        assert "<option selected>10</option>" in first.text
        second = await tens.get(_href(first.text, r'rel="next" class="button" href="([^"]+)"'))
        assert sorted(_ids(first.text) + _ids(second.text)) == sorted(made)
        # The menu's sizes still work on that tier.
        bigger = await tens.get("/search", params={"q": "quokka", "page_size": "25"})
        assert len(_ids(bigger.text)) == 12
    # A tier with the default size offers no 10 in its menu, yet serves a link asking for it.
    await sign_in(client, "bob")
    other = await client.get("/search", params={"q": "quokka", "page_size": "10"})
    assert len(_ids(other.text)) == 10
    assert "<option selected>10</option>" in other.text
    plain = await client.get("/search", params={"q": "quokka"})
    assert len(_ids(plain.text)) == 12
    assert "<option>10</option>" not in plain.text
    assert "<option selected>50</option>" in plain.text


async def test_any_page_size_from_1_to_200_is_served_and_kept_by_the_page_links(
    client: AsyncTestClient[Any], model: v1.ModelStub, world: World
) -> None:
    """A size the menu lacks (7) is honoured, shown selected in the menu, and kept page to page."""
    made = await _many(model, world, "numbat", 9)
    await sign_in(client, "bob")
    first = await client.get("/search", params={"q": "numbat", "page_size": " 7 "})
    assert first.status_code == 200
    assert len(_ids(first.text)) == 7
    assert "page 1 of 2" in first.text
    assert "<option selected>7</option>" in first.text
    second = await client.get(_href(first.text, r'rel="next" class="button" href="([^"]+)"'))
    assert "page_size=7" in str(second.url)
    assert sorted(_ids(first.text) + _ids(second.text)) == sorted(made)
    for size, shown in (("1", 1), ("200", 9), ("", 9)):
        page = await client.get("/search", params={"q": "numbat", "page_size": size})
        assert (page.status_code, len(_ids(page.text))) == (200, shown), size


@pytest.mark.parametrize(
    ("size", "reason"),
    [
        ("0", "page_size: 0 is outside 1 to 200 issues per page"),
        ("-5", "page_size: -5 is outside 1 to 200 issues per page"),
        ("201", "page_size: 201 is outside 1 to 200 issues per page"),
        ("1" * 30, f"page_size: {'1' * 20}… is outside 1 to 200 issues per page"),
        ("many", "page_size: &#39;many&#39; is not a number; give 1 to 200 issues per page"),
        ("1_0", "page_size: &#39;1_0&#39; is not a number; give 1 to 200 issues per page"),
        ("2.5", "page_size: &#39;2.5&#39; is not a number; give 1 to 200 issues per page"),
    ],
)
async def test_a_page_size_that_cannot_be_served_is_a_400_saying_why(
    client: AsyncTestClient[Any], size: str, reason: str
) -> None:
    """As the API refuses a page_size outside its bounds: the reason, not another size."""
    await sign_in(client, "bob")
    page = await client.get("/search", params={"q": "numbat", "page_size": size})
    assert page.status_code == 400
    assert reason in page.text


async def test_a_tampered_page_trail_is_a_400_saying_so(client: AsyncTestClient[Any]) -> None:
    await sign_in(client, "bob")
    bad = await client.get(
        "/search", params={"q": "wombat", "page_token": "x", "trail": "not-a-trail!"}
    )
    assert bad.status_code == 400
    assert "not a page trail" in bad.text


async def test_chosen_columns_are_kept_in_this_browser(client: AsyncTestClient[Any]) -> None:
    await sign_in(client, "bob")
    chosen = await client.get(
        "/search", params={"q": "wombat", "columns": "id,title,reporter", "set_columns": "1"}
    )
    assert chosen.status_code == 200
    assert client.cookies.get(COLUMNS_COOKIE) == "id.title.reporter"
    later = await client.get("/search", params={"q": "is:open"})
    headers = re.findall(r'<th class="col-([a-z]+)"', later.text)
    assert headers == ["id", "title", "reporter"]
    # A link naming columns shows them without changing the browser's choice.
    linked = await client.get("/search", params={"q": "is:open", "columns": "id,status"})
    assert re.findall(r'<th class="col-([a-z]+)"', linked.text) == ["id", "status"]
    assert client.cookies.get(COLUMNS_COOKIE) == "id.title.reporter"


async def test_an_unknown_column_is_a_400_naming_it_and_the_known_ones(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """Before, ``columns=id,titel`` showed the ID column alone, and the CSV one column."""
    await create_issue(model, world, "Numbat with columns")
    await sign_in(client, "bob")
    for path in ("/search", "/search.csv"):
        bad = await client.get(path, params={"q": "numbat", "columns": "id,titel"})
        assert bad.status_code == 400, path
        text = html_lib.unescape(bad.text)
        assert "'titel' is not a list column" in text, path
        assert "id, priority, severity, type, title" in text, path
        assert "customfield<ID>" in text, path
        assert bad.headers["content-type"].startswith("text/html"), path
    too_many = ",".join(f"customfield{n}" for n in range(1, 7))
    refused = await client.get("/search", params={"q": "numbat", "columns": f"id,{too_many}"})
    assert refused.status_code == 400
    assert "6 custom field columns; a list shows at most 5" in refused.text
    # Known columns, named twice or with spaces, and a custom field's column stay fine.
    fine = await client.get(
        "/search", params={"q": "numbat", "columns": "id, title,id,customfield9"}
    )
    assert fine.status_code == 200
    assert re.findall(r'<th class="col-([a-z0-9]+)"', fine.text) == ["id", "title", "customfield9"]
    csv_fine = await client.get("/search.csv", params={"q": "numbat", "columns": "id,title"})
    assert csv_fine.status_code == 200
    assert csv_fine.text.splitlines()[0] == "ID,Title"


@pytest.fixture
async def small_cap_client(world: World) -> AsyncIterator[AsyncTestClient[Litestar]]:
    settings = WebSettings(
        model=world.stack.model,
        auth=world.stack.auth,
        session_keys=(SESSION_KEY,),
        dev=True,
        export_row_cap=503,
    )
    async with AsyncTestClient(create_app(settings), base_url="http://testserver.local") as c:
        yield c


async def test_csv_export_streams_every_page_up_to_the_cap(
    small_cap_client: AsyncTestClient[Litestar], world: World, model: v1.ModelStub
) -> None:
    await _many(model, world, "platypus", 510)  # more than one Model page of 500
    await sign_in(small_cap_client, "bob")
    response = await small_cap_client.get(
        "/search.csv", params={"q": "platypus", "columns": "id,title,reporter,status"}
    )
    assert response.status_code == 200
    # One charset (it was "text/csv; charset=utf-8; charset=utf-8").
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["ID", "Title", "Reporter", "Status"]
    assert len(rows) == 1 + 503  # capped, across two pages of the Model's
    assert all(r[2] == "bob" and r[3] == "New" for r in rows[1:])
    assert len({r[0] for r in rows[1:]}) == 503


async def test_csv_export_defuses_formulas_and_keeps_visibility(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    await create_issue(model, world, '=HYPERLINK("http://evil") echidna')
    await create_issue(model, world, "echidna in the secret", by="alice", component="Secret")
    await sign_in(client, "bob")
    response = await client.get("/search.csv", params={"q": "echidna", "columns": "title"})
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[1:] == [['\'=HYPERLINK("http://evil") echidna']]
    broken = await client.get("/search.csv", params={"q": "status:("})
    assert broken.status_code == 400


async def test_a_list_of_ascii_issues_is_an_ascii_page(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    # One character beyond ASCII anywhere makes Python keep the whole page at
    # two bytes a character and encode it to UTF-8 the slow way (60 us of a
    # list page's CPU): the chrome writes its dashes, arrows and ellipses as
    # character references, which the browser shows as the same characters.
    await _many(model, world, "numbat", 30)
    await sign_in(client, "bob")
    page = await client.get("/search", params={"q": "numbat sort:priority", "page_size": "25"})
    assert page.status_code == 200
    text = page.text
    beyond = [text[max(0, i - 60) : i + 5] for i, c in enumerate(text) if not c.isascii()]
    assert not beyond, beyond[:5]
    shown = html_lib.unescape(page.text)
    assert "Next »" in shown
    assert " ▲</a>" in shown
    assert "Bulk edit…" in shown
    assert '<span class="muted">—</span>' in shown  # nobody assigned
