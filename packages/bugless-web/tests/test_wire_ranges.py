"""Numbers from forms, query strings and headers that the Model's fields cannot hold.

betterproto2 sends an integer its field's wire type cannot hold as its low
bits, so before these checks such a number reached the Model as another,
smaller one, which it acted on: a hotlist rank to 4294967297 moved the item
to the top, a download range past int64 was served from byte 3. Each is
now refused (or, for a download range, cut to int64: a first byte there
is past the end, a last byte there the end) before anything is sent;
under them, every call the web makes is checked the same way and refused
with a 400 naming the request's field.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from web_support import World, create_issue, sign_in

from bugless_core.clients import call
from bugless_core.errors import InvalidArgument
from bugless_proto import v1
from bugless_web.frontend import Frontend
from bugless_web.routes.hotlists import MAX_POSITION


def _order(page: str) -> list[str]:
    return re.findall(r'data-issue="(\d+)"', page)


async def test_a_rank_past_int32_is_a_400_naming_the_position_and_moves_nothing(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """Before, position 4294967297 (2**32 + 1) was sent as 0 and moved the item to the top."""
    issues = [await create_issue(model, world, f"Ranked far {n}") for n in range(3)]
    token = await sign_in(client, "bob")
    created = await client.post(
        "/hotlists", data={"_csrf": token, "name": "Far ranks"}, follow_redirects=False
    )
    url = created.headers["location"]
    ids = " ".join(str(i.id) for i in issues)
    await client.post(f"{url}/items", data={"_csrf": token, "issue_ids": ids})
    before = _order((await client.get(url)).text)
    assert before == [str(i.id) for i in issues]
    for position in (str(2**32 + 1), str(MAX_POSITION + 1), "0"):
        refused = await client.post(
            f"{url}/items/{issues[2].id}/rank", data={"_csrf": token, "position": position}
        )
        assert refused.status_code == 400, position
        assert f"position: give a position from 1 to {MAX_POSITION}" in refused.text, position
        assert _order((await client.get(url)).text) == before, position
    # The largest one accepted is past the end: the last place.
    last = await client.post(
        f"{url}/items/{issues[0].id}/rank", data={"_csrf": token, "position": str(MAX_POSITION)}
    )
    assert last.status_code < 400, last.text
    assert _order((await client.get(url)).text) == [str(issues[1].id), str(issues[2].id), before[0]]


async def test_an_edit_moving_to_a_component_past_int64_is_refused_at_the_picker(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """The destination's fields are not asked for a wrapped id; the form names the field."""
    issue = await create_issue(model, world, "Moved nowhere")
    token = await sign_in(client, "bob")
    storage = world.components["Platform>Storage"]
    wrapped = str(2**64 + storage)
    page = await client.post(
        f"/issues/{issue.id}",
        data={
            "_csrf": token,
            "version": str(issue.version),
            "title": issue.title,
            "component_id": wrapped,
        },
    )
    assert page.status_code == 400
    assert "component" in page.text
    assert wrapped in page.text  # what was typed, shown again at the field
    now = await call(model.get_issue, v1.GetIssueRequest(caller=world.admin, issue_id=issue.id))
    assert (now.version, now.component_id) == (issue.version, issue.component_id)


async def test_a_download_range_past_int64_is_answered_not_wrapped(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """Before, ``bytes=18446744073709551619-`` (2**64 + 3) was a 206 of the bytes from 3 on.

    A first byte that far is past the end (416); a last byte that far is the end.
    """
    issue = await create_issue(model, world, "A file read from far away")
    token = await sign_in(client, "bob")
    content = b"0123456789abcdef"
    uploaded = await client.post(
        f"/issues/{issue.id}/attachments",
        content=content,
        headers={"x-csrf-token": token, "x-file-name": quote("far.bin")},
    )
    assert uploaded.status_code == 201, uploaded.text
    url = uploaded.json()["url"]
    for header in (f"bytes={2**64 + 3}-", f"bytes={2**63 - 1}-{2**64}", f"bytes=-{2**64}0"):
        far = await client.get(url, headers={"range": header})
        if header.startswith("bytes=-"):
            assert (far.status_code, far.content) == (206, content), header
            assert far.headers["content-range"] == "bytes 0-15/16", header
        else:
            assert far.status_code == 416, header
            assert far.headers["content-range"] == "bytes */16", header
    for header in (f"bytes=0-{2**64 + 3}", f"bytes=0-{2**63 - 1}"):
        whole = await client.get(url, headers={"range": header})
        assert (whole.status_code, whole.content) == (206, content), header
        assert whole.headers["content-range"] == "bytes 0-15/16", header
    ranged = await client.get(url, headers={"range": "bytes=3-5"})
    assert (ranged.status_code, ranged.content) == (206, b"345")


@pytest.mark.parametrize(
    ("method", "request_", "field"),
    [
        ("list_custom_fields", v1.ListCustomFieldsRequest(component_id=2**64 + 1), "component_id"),
        (
            "rank_hotlist_item",
            v1.RankHotlistItemRequest(hotlist_id=1, issue_id=1, position=2**31),
            "position",
        ),
        (
            "search_issues",
            v1.SearchIssuesRequest(page=v1.PageRequest(page_size=2**32 + 50)),
            "page.page_size",
        ),
    ],
    ids=["int64", "int32", "nested"],
)
async def test_every_call_the_web_makes_refuses_a_number_its_field_cannot_hold(
    app: Litestar, client: AsyncTestClient[Any], method: str, request_: Any, field: str
) -> None:
    """The net under the pages: nothing is sent, and the error names the field.

    Before, each was sent wrapped (component 1, position 0, the default page size).
    """
    frontend: Frontend = app.state["frontend"]
    send: Callable[[Any], Awaitable[Any]] = getattr(frontend.backends.model, method)
    with pytest.raises(InvalidArgument) as refused:
        await call(send, request_)
    assert refused.value.message.startswith(f"{field}: "), refused.value.message
    assert "is outside int" in refused.value.message
    assert refused.value.message.endswith("; nothing was changed")
