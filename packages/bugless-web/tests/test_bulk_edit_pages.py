"""The search page's bulk edit: what it changes, and what a refused one keeps.

A bulk edit changes every selected issue at its version and reports those
another person changed first; a refused one (a name that is nobody, a later
page, a search that finds no row any more) changes nothing and shows the
search, the selection and what was typed again, with the reason.
"""

from __future__ import annotations

import re
from typing import Any

from litestar.testing import AsyncTestClient
from web_support import World, bulk_form_fields, create_issue, sign_in

from bugless_core.clients import call
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask


async def test_bulk_edit_changes_selected_and_reports_conflicts(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    a = await create_issue(model, world, "Bulk walrus a")
    b = await create_issue(model, world, "Bulk walrus b")
    token = await sign_in(client, "bob")
    page = await client.get("/search", params={"q": "walrus"})
    assert f'value="{a.id}:1"' in page.text
    response = await client.post(
        "/issues/bulk",
        data={
            "_csrf": token,
            "q": "walrus",
            "issue": [f"{a.id}:1", f"{b.id}:1"],
            "priority": "P0",
            "assignee": "carol",
            "comment": "Triage sweep",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303
    for issue_id in (a.id, b.id):
        issue = await call(
            model.get_issue, v1.GetIssueRequest(caller=world.admin, issue_id=issue_id)
        )
        assert issue.priority == v1.Priority.P0
        assert issue.assignee == world.users["carol"]
        assert issue.version == 2
    assert "Changed 2 issues." in (await client.get(response.headers["location"])).text
    one = await client.post(
        "/issues/bulk",
        data={"_csrf": token, "q": "walrus", "issue": [f"{b.id}:2"], "priority": "P1"},
    )
    assert one.status_code == 200
    assert "Changed 1 issue." in one.text  # was "Changed 1 issues."
    stale = await client.post(
        "/issues/bulk",
        data={"_csrf": token, "q": "walrus", "issue": [f"{a.id}:1"], "priority": "P3"},
    )
    assert stale.status_code == 409
    assert "Changed by someone else meanwhile" in stale.text


async def test_a_refused_bulk_edit_keeps_the_search_the_selection_and_the_input(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """An unknown user or no selection: the search again, not an error page that lost it all."""
    a = await create_issue(model, world, "Bulk narwhal a")
    b = await create_issue(model, world, "Bulk narwhal b")
    c = await create_issue(model, world, "Bulk narwhal c")
    token = await sign_in(client, "bob")
    typed = {"priority": "P1", "assignee": "nobody_at_all", "cc_add": "carol"}
    refused = await client.post(
        "/issues/bulk",
        data={
            "_csrf": token,
            "q": "narwhal",
            "issue": [f"{a.id}:1", f"{c.id}:1"],
            **typed,
            "comment": "Sweep <b>notes</b>",
        },
    )
    assert refused.status_code == 400
    html = refused.text
    assert "<title>narwhal &middot; bugless</title>" in html  # the search, not an error page
    assert "Bulk narwhal b</a>" in html
    assert (
        '<p class="banner error" role="alert">Nothing was changed: '
        "assignee: no user named &#39;nobody_at_all&#39;</p>"
    ) in html
    assert '<details class="bulk" open>' in html
    assert '<option value="P1" selected>' in html
    assert 'name="assignee" value="nobody_at_all"' in html
    assert 'name="cc_add" value="carol"' in html
    assert "Sweep &lt;b&gt;notes&lt;/b&gt;</textarea>" in html
    for issue, ticked in ((a, True), (b, False), (c, True)):
        box = f'value="{issue.id}:1" checked ' if ticked else f'value="{issue.id}:1" aria-label'
        assert box in html, issue.id
    for issue in (a, b, c):
        now = await call(model.get_issue, v1.GetIssueRequest(caller=world.admin, issue_id=issue.id))
        assert now.version == 1
        assert now.priority != v1.Priority.P1

    nothing = await client.post(
        "/issues/bulk", data={"_csrf": token, "q": "narwhal", "comment": "kept"}
    )
    assert nothing.status_code == 400
    assert "Nothing was changed: select at least one issue for a bulk edit" in nothing.text
    assert ">kept</textarea>" in nothing.text

    # A row changed since it was ticked comes back unticked: sending again
    # must not overwrite that change.
    await call(
        model.change_issue,
        v1.ChangeIssueRequest(
            caller=world.admin, issue_id=a.id, expected_version=1, comment="meanwhile"
        ),
    )
    again = await client.post(
        "/issues/bulk",
        data={"_csrf": token, "q": "narwhal", "issue": [f"{a.id}:1"], "assignee": "nobody_at_all"},
    )
    assert again.status_code == 400
    assert f'value="{a.id}:2" aria-label' in again.text


async def test_a_refused_bulk_edit_on_a_later_page_shows_that_page_again(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """The bulk form carries its page (size and position): a refusal shows the rows
    that were ticked on it, and a change goes back to it, not to page 1 at the
    deployment's page size (where a row ticked on page 2 was not shown ticked)."""
    for letter in "abc":
        await create_issue(model, world, f"Pagebulk okapi {letter}")
    token = await sign_in(client, "bob")
    first = await client.get("/search", params={"q": "okapi", "page_size": "2"})
    next_href = re.search(r'<a rel="next" class="button" href="([^"]+)"', first.text)
    assert next_href is not None
    second = await client.get(next_href.group(1).replace("&amp;", "&"))
    boxes = re.findall(r'name="issue" value="(\d+):1"', second.text)
    assert len(boxes) == 1, second.text  # the third issue, alone on page 2
    others = set(re.findall(r'name="issue" value="(\d+):1"', first.text))
    hidden = bulk_form_fields(second.text)
    assert hidden["page_size"] == "2"
    assert hidden["page_token"]

    refused = await client.post(
        "/issues/bulk",
        data={**hidden, "_csrf": token, "issue": f"{boxes[0]}:1", "assignee": "nobody_at_all"},
    )
    assert refused.status_code == 400
    assert "Nothing was changed: assignee: no user named" in refused.text
    assert f'value="{boxes[0]}:1" checked ' in refused.text
    assert '<span class="current" aria-current="page">2</span>' in refused.text
    assert not any(f'value="{other}:1"' in refused.text for other in others)

    again = {**bulk_form_fields(refused.text), "_csrf": token, "issue": f"{boxes[0]}:1"}
    changed = await client.post(
        "/issues/bulk", data={**again, "priority": "P1"}, follow_redirects=False
    )
    assert changed.status_code in (302, 303)
    back = changed.headers["location"]
    assert back.startswith("/search?q=okapi&page_size=2&page_token=")
    assert "page_token=" + hidden["page_token"].replace("=", "%3D") in back
    issue = await call(
        model.get_issue, v1.GetIssueRequest(caller=world.admin, issue_id=int(boxes[0]))
    )
    assert issue.priority == v1.Priority.P1


async def test_a_refused_bulk_edit_says_why_when_the_search_finds_no_row_any_more(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """Rows gone from the search meanwhile take the bulk form with them: the reason
    still shows, instead of a 400 page that says nothing."""
    issue = await create_issue(model, world, "Vanishing quokka")
    token = await sign_in(client, "bob")
    renamed = v1.IssueDelta(
        fields=v1.IssueFields(title="Renamed"), update_mask=FieldMask(paths=["title"])
    )
    await call(
        model.change_issue,
        v1.ChangeIssueRequest(
            caller=world.admin, issue_id=issue.id, expected_version=1, delta=renamed
        ),
    )
    refused = await client.post(
        "/issues/bulk",
        data={"_csrf": token, "q": "quokka", "issue": f"{issue.id}:1", "assignee": "nobody_x"},
    )
    assert refused.status_code == 400
    assert '<p class="banner error" role="alert">Nothing was changed: assignee:' in refused.text
