"""Editing one's comment and redacting one through the web pages (real services)."""

from __future__ import annotations

import re
from typing import Any

from litestar.testing import AsyncTestClient
from web_support import World, create_issue, sign_in

from bugless_core.clients import call
from bugless_proto import v1


async def _comment(model: v1.ModelStub, world: World, issue: v1.Issue, by: str, text: str) -> int:
    response = await call(
        model.change_issue,
        v1.ChangeIssueRequest(
            caller=world.caller(by),
            issue_id=issue.id,
            expected_version=(await _issue(model, world, issue.id)).version,
            comment=text,
        ),
    )
    assert response.entry is not None
    return response.entry.version


async def _issue(model: v1.ModelStub, world: World, issue_id: int) -> v1.Issue:
    return await call(model.get_issue, v1.GetIssueRequest(caller=world.admin, issue_id=issue_id))


def _entry_html(html: str, version: int) -> str:
    start = html.index(f'id="entry-{version}"')
    return html[start : html.index("</article>", start)]


async def test_the_author_edits_and_the_page_shows_the_latest_text_marked_edited(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    issue = await create_issue(model, world, "Edited comment shows latest text")
    entry = await _comment(model, world, issue, "bob", "first wording")
    csrf = await sign_in(client, "bob")
    page = await client.get(f"/issues/{issue.id}")
    assert f'action="/issues/{issue.id}/entries/{entry}/edit"' in _entry_html(page.text, entry)
    # An edit keeps the old text: the author, who may not redact, is told who can.
    own = _entry_html(page.text, entry)
    assert "ask an admin of the issue's component to redact it" in own
    assert 'class="redact-form"' not in own
    version = (await _issue(model, world, issue.id)).version
    response = await client.post(
        f"/issues/{issue.id}/entries/{entry}/edit",
        data={"_csrf": csrf, "version": str(version), "comment": "second **wording**"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"/issues/{issue.id}#entry-{entry}"
    html = (await client.get(f"/issues/{issue.id}")).text
    shown = _entry_html(html, entry)
    assert "second <strong>wording</strong>" in shown
    assert 'class="edited-mark"' in shown
    # The earlier text is one click away (a closed <details>), not gone.
    versions = shown.split('class="versions"', 1)[1]
    assert "Earlier versions (1)" in versions
    assert "first wording" in versions
    # The edit itself reads as a short line pointing at the comment.
    edit_line = _entry_html(html, version + 1)
    assert "edited the comment of" in edit_line
    assert "second" not in edit_line


async def test_others_see_the_versions_but_no_edit_form(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    issue = await create_issue(model, world, "Only the author gets an edit form")
    entry = await _comment(model, world, issue, "bob", "bob wrote this")
    await call(
        model.edit_comment,
        v1.EditCommentRequest(
            caller=world.caller("bob"),
            issue_id=issue.id,
            expected_version=(await _issue(model, world, issue.id)).version,
            entry_version=entry,
            comment="bob rewrote this",
        ),
    )
    await sign_in(client, "carol")
    html = (await client.get(f"/issues/{issue.id}")).text
    shown = _entry_html(html, entry)
    assert "bob rewrote this" in shown
    assert "bob wrote this" in shown  # among the earlier versions
    assert "/edit" not in shown
    assert "Redact" not in shown  # carol administers nothing


async def test_a_stale_or_blank_edit_keeps_the_typed_text(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    issue = await create_issue(model, world, "Stale comment edit")
    entry = await _comment(model, world, issue, "bob", "original")
    csrf = await sign_in(client, "bob")
    stale = (await _issue(model, world, issue.id)).version
    await _comment(model, world, issue, "carol", "someone else spoke")
    response = await client.post(
        f"/issues/{issue.id}/entries/{entry}/edit",
        data={"_csrf": csrf, "version": str(stale), "comment": "my careful rewrite"},
    )
    assert response.status_code == 409
    shown = _entry_html(response.text, entry)
    assert '<details class="edit-comment" open>' in shown
    assert "my careful rewrite</textarea>" in shown
    assert "changed while you were editing" in shown
    now = (await _issue(model, world, issue.id)).version
    blank = await client.post(
        f"/issues/{issue.id}/entries/{entry}/edit",
        data={"_csrf": csrf, "version": str(now), "comment": "   "},
    )
    assert blank.status_code == 409
    assert "comment" in _entry_html(blank.text, entry)
    assert (await _issue(model, world, issue.id)).version == now


async def test_a_component_admin_redacts_and_the_timeline_shows_a_marker(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    secret = "hunter2sekritword"
    issue = await create_issue(model, world, "Leaked a password", description=f"pw {secret}")
    entry = await _comment(model, world, issue, "bob", f"also {secret}")
    csrf = await sign_in(client, "alice")
    page = await client.get(f"/issues/{issue.id}")
    assert 'class="redact-form"' in _entry_html(page.text, entry)
    version = (await _issue(model, world, issue.id)).version
    for target in (entry, 1):
        response = await client.post(
            f"/issues/{issue.id}/redact",
            data={"_csrf": csrf, "version": str(version), "entry_version": str(target)},
            follow_redirects=False,
        )
        assert response.status_code == 303, response.text
        version += 1
        assert response.headers["location"] == f"/issues/{issue.id}#entry-{version}"
    html = (await client.get(f"/issues/{issue.id}")).text
    assert secret not in html
    assert "Comment redacted." in _entry_html(html, entry)
    assert "Description redacted." in _entry_html(html, 1)
    record = _entry_html(html, version - 1)
    assert re.search(r"redacted the comment of <a href=\"#entry-\d+\">#\d+</a>", record)
    assert "redacted the description" in _entry_html(html, version)
    found = await client.get("/search", params={"q": secret})
    assert f'href="/issues/{issue.id}"' not in found.text


async def test_redaction_by_someone_who_is_not_admin_is_refused(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    issue = await create_issue(model, world, "Bob may not redact", description="keep me")
    csrf = await sign_in(client, "bob")
    version = (await _issue(model, world, issue.id)).version
    response = await client.post(
        f"/issues/{issue.id}/redact",
        data={"_csrf": csrf, "version": str(version), "entry_version": "1"},
    )
    assert response.status_code == 403
    assert "admin" in response.text.lower()
    assert (await _issue(model, world, issue.id)).description == "keep me"


async def test_single_entries_render_edits_and_redactions_as_live_updates_insert_them(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    issue = await create_issue(model, world, "Entries one at a time", description="d")
    entry = await _comment(model, world, issue, "bob", "said once")
    edited = await call(
        model.edit_comment,
        v1.EditCommentRequest(
            caller=world.caller("bob"),
            issue_id=issue.id,
            expected_version=(await _issue(model, world, issue.id)).version,
            entry_version=entry,
            comment="said twice",
        ),
    )
    assert edited.entry is not None
    await sign_in(client, "bob")
    line = await client.get(f"/issues/{issue.id}/entries/{edited.entry.version}")
    assert line.status_code == 200
    assert "edited the comment of" in line.text
    original = await client.get(f"/issues/{issue.id}/entries/{entry}")
    assert original.status_code == 200
    assert "said once" in original.text  # alone, an entry shows its own text
    assert "/edit" not in original.text  # forms only on the whole page


async def test_an_entry_fetched_by_a_live_update_leaves_the_notice_for_the_next_page(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """The edit's "Edit saved" is shown on the page the save redirects to, although
    the page's live update fetched the new entry in between (as it does when the
    feed announces the edit before the browser follows the redirect). Before, the
    entry was rendered as a page, which used up the session's one-shot notice."""
    issue = await create_issue(model, world, "Notice after a live fetch", description="d")
    entry = await _comment(model, world, issue, "bob", "first wording")
    csrf = await sign_in(client, "bob")
    version = (await _issue(model, world, issue.id)).version
    response = await client.post(
        f"/issues/{issue.id}/entries/{entry}/edit",
        data={"_csrf": csrf, "version": str(version), "comment": "second wording"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    fetched = await client.get(f"/issues/{issue.id}/entries/{version + 1}")
    assert fetched.status_code == 200
    assert "edited the comment of" in fetched.text
    assert "Edit saved" not in fetched.text
    page = await client.get(f"/issues/{issue.id}")
    assert "Edit saved; the earlier text stays in the history." in page.text
    assert "Edit saved" not in (await client.get(f"/issues/{issue.id}")).text  # one-shot
