"""The bulk edit bar's two hotlist selects: one hotlist in both is refused in the bar's words.

Real web app, Model and Authenticator.
"""

from __future__ import annotations

import html
import re
from typing import Any

from litestar.testing import AsyncTestClient
from web_support import World, bulk_form_fields, create_issue, sign_in

from bugless_proto import v1

_ROWS = re.compile(r'name="issue" value="(\d+):(\d+)"')


async def test_one_hotlist_to_add_to_and_remove_from_is_refused_naming_both_selects(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    issue = await create_issue(model, world, "Both ways bilby")
    token = await sign_in(client, "bob")
    created = await client.post(
        "/hotlists", data={"_csrf": token, "name": "Both ways"}, follow_redirects=False
    )
    assert created.status_code == 303
    hotlist_id = int(created.headers["location"].rsplit("/", 1)[1])
    page = await client.get("/search", params={"q": "bilby"})
    rows = _ROWS.findall(page.text)
    assert rows == [(str(issue.id), str(issue.version))]

    refused = await client.post(
        "/issues/bulk",
        data={
            **bulk_form_fields(page.text),
            "_csrf": token,
            "issue": [f"{issue_id}:{version}" for issue_id, version in rows],
            "hotlist_add": str(hotlist_id),
            "hotlist_remove": str(hotlist_id),
        },
        follow_redirects=False,
    )

    assert refused.status_code == 400
    text = html.unescape(refused.text)
    assert "Add to hotlist and Remove from hotlist name the same hotlist" in text
    assert "delta.hotlist_add" not in text
    # Nothing changed, and the form keeps the selection to correct.
    assert (
        await model.get_issue(v1.GetIssueRequest(caller=world.admin, issue_id=issue.id))
    ).version == issue.version
    assert _ROWS.findall(refused.text) == rows
