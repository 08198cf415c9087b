"""Attachments through the web tier (real Model, Authenticator and database store)."""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any

from litestar.testing import AsyncTestClient
from web_support import World, create_issue, sign_in, upload_attachment

from bugless_core.clients import call
from bugless_proto import v1
from bugless_web import WebSettings, create_app

PNG = b"\x89PNG\r\n\x1a\n" + secrets.token_bytes(300)
HTML = b"<!doctype html><html><script>document.title='pwned'</script></html>"


async def test_upload_then_download_with_safe_headers(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    issue = await create_issue(model, world, "Attachments served safely")
    csrf = await sign_in(client, "bob")
    big = secrets.token_bytes(1_500_000)
    cases = [
        (big, "core.bin", "application/octet-stream", "attachment"),
        (PNG, "shot.png", "image/png", "inline"),
        (b"plain log <script>alert(1)</script>\n", "app.log", "text/plain; charset=utf-8",
         "inline"),
        (HTML, "page.html", "application/octet-stream", "attachment"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
         "x.svg", "application/octet-stream", "attachment"),
    ]  # fmt: skip
    for content, name, served_type, disposition in cases:
        # Declared as an image: the Model sniffs, and the page serves what it found.
        response = await upload_attachment(
            client, csrf, issue.id, content, name, content_type="image/png"
        )
        assert response.status_code == 201, response.text
        created = response.json()
        assert created["size"] == len(content)
        download = await client.get(created["url"])
        assert download.status_code == 200
        assert download.content == content
        headers = download.headers
        assert headers["content-type"] == served_type, name
        assert headers["content-disposition"].startswith(disposition), name
        assert headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in headers["content-security-policy"]
        assert "default-src 'none'" in headers["content-security-policy"]
        assert headers["content-length"] == str(len(content))
    ranged = await client.get(f"/attachments/{created['id']}/x.svg", headers={"range": "bytes=5-9"})
    assert ranged.status_code == 206
    assert ranged.content == cases[-1][0][5:10]
    assert ranged.headers["content-range"] == f"bytes 5-9/{len(cases[-1][0])}"

    page = (await client.get(f"/issues/{issue.id}")).text
    assert 'class="thumb"' in page
    assert "shot.png" in page
    assert 'id="attachments"' in page


async def test_hostile_names_and_hidden_issues(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    secret = await call(
        model.create_issue,
        v1.CreateIssueRequest(
            caller=world.admin,
            fields=v1.IssueFields(title="secret", component_id=world.components["Secret"]),
        ),
    )
    csrf = await sign_in(client, "alice")
    response = await upload_attachment(
        client, csrf, secret.id, b"\x00\x01", '..\\..\\evil"\u202egnp.exe'
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["name"] == 'evil"gnp.exe'
    download = await client.get(created["url"])
    disposition = download.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="evil_gnp.exe"')
    assert "\u202e" not in disposition

    await client.post("/signout", data={"_csrf": csrf})
    csrf = await sign_in(client, "bob")
    hidden = await client.get(created["url"])
    assert hidden.status_code == 404
    refused = await upload_attachment(client, csrf, secret.id, b"x", "y.txt")
    assert refused.status_code == 404
    assert "not found" in refused.json()["error"]
    deleted = await client.post(
        f"/attachments/{created['id']}/delete", data={"_csrf": csrf}, follow_redirects=False
    )
    assert deleted.status_code == 404


async def test_delete_by_the_uploader_and_csrf_is_required(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    issue = await create_issue(model, world, "Delete an attachment")
    csrf = await sign_in(client, "bob")
    forged = await upload_attachment(client, "not-the-token", issue.id, b"x", "a.txt")
    assert forged.status_code == 403
    created = (await upload_attachment(client, csrf, issue.id, b"hello", "a.txt")).json()
    page = (await client.get(f"/issues/{issue.id}")).text
    assert f'action="/attachments/{created["id"]}/delete"' in page
    response = await client.post(
        f"/attachments/{created['id']}/delete", data={"_csrf": csrf}, follow_redirects=False
    )
    assert response.status_code == 303
    page = (await client.get(response.headers["location"])).text
    # The notice and the timeline name the file, not its id.
    assert "Attachment a.txt deleted; the history records it." in page
    assert "deleted attachment a.txt" in page
    gone = await client.get(created["url"])
    assert gone.status_code == 410  # ContentGone: deleted for good
    assert "deleted" in gone.text


async def test_a_download_host_serves_by_short_lived_link_without_cookies(
    web_settings: WebSettings, world: World, model: v1.ModelStub
) -> None:
    settings = dataclasses.replace(web_settings, download_url="http://files.testserver.local")
    app = create_app(settings)
    issue = await create_issue(model, world, "Downloads from another host")
    async with AsyncTestClient(app, base_url="http://testserver.local") as client:
        csrf = await sign_in(client, "bob")
        created = (await upload_attachment(client, csrf, issue.id, PNG, "shot.png")).json()
        page = await client.get(f"/issues/{issue.id}")
        assert (
            "img-src 'self' data: http://files.testserver.local"
            in page.headers["content-security-policy"]
        )
        handed = await client.get(created["url"], follow_redirects=False)
        assert handed.status_code == 303
        link = handed.headers["location"]
        assert link.startswith(f"http://files.testserver.local/attachments/{created['id']}/")
    async with AsyncTestClient(app, base_url="http://files.testserver.local") as cookieless:
        served = await cookieless.get(link)
        assert served.status_code == 200
        assert served.content == PNG
        assert "sandbox" in served.headers["content-security-policy"]
        forged = await cookieless.get(link[:-6] + "AAAAAA")
        assert forged.status_code == 404
        other = await cookieless.get(
            link.replace(f"/attachments/{created['id']}/", "/attachments/1/")
        )
        assert other.status_code == 404


async def test_the_upload_form_needs_the_csrf_token_and_a_file(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """The no-script form (its browser test: test_browser_attach_form.py)."""
    issue = await create_issue(model, world, "CSRF on the upload form")
    form = f"/issues/{issue.id}/attachments/form"
    files = {"file": ("x.txt", b"forged", "text/plain")}
    csrf = await sign_in(client, "bob")
    assert (await client.post(form, files=files)).status_code == 403
    wrong = await client.post(form, data={"_csrf": "not-the-token"}, files=files)
    assert wrong.status_code == 403
    empty = await client.post(
        form, data={"_csrf": csrf}, files={"file": ("", b"", "application/octet-stream")}
    )
    assert empty.status_code == 400
    assert "choose a file" in empty.text
    # Back to the issue the form was on (before: only "Back to my issues").
    assert f'<a href="/issues/{issue.id}" class="button primary">Back to issue {issue.id}</a>' in (
        empty.text
    )
    listed = await call(
        model.list_attachments,
        v1.ListAttachmentsRequest(caller=world.caller("bob"), issue_id=issue.id),
    )
    assert list(listed.attachments) == []
    done = await client.post(
        form, data={"_csrf": csrf, "comment": "the log"}, files=files, follow_redirects=False
    )
    assert done.status_code == 303
    assert done.headers["location"].endswith(f"/issues/{issue.id}#attachments")
    listed = await call(
        model.list_attachments,
        v1.ListAttachmentsRequest(caller=world.caller("bob"), issue_id=issue.id),
    )
    assert [a.name for a in listed.attachments] == ["x.txt"]
    history = (await client.get(f"/issues/{issue.id}")).text
    assert "the log" in history


async def test_ranges_are_answered_as_rfc_9110_says(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """Before, a range from the end or past it had a negative length and a wrong Content-Range.

    A last byte past the end is cut at the end, ``bytes=-N`` is the last N
    bytes, one starting at or past the end is 416 with ``bytes */SIZE``, and
    a malformed header is ignored: the whole file.
    """
    issue = await create_issue(model, world, "Ranges of a download")
    csrf = await sign_in(client, "bob")
    content = b"0123456789abcdef"
    url = (await upload_attachment(client, csrf, issue.id, content, "r.bin")).json()["url"]
    satisfiable = {
        "bytes=3-5": (3, 5),
        "bytes=10-99": (10, 15),
        "bytes=0-": (0, 15),
        "bytes=15-15": (15, 15),
        "bytes=-4": (12, 15),
        "bytes=-99": (0, 15),
    }
    for header, (first, last) in satisfiable.items():
        ranged = await client.get(url, headers={"range": header})
        assert ranged.status_code == 206, header
        assert ranged.content == content[first : last + 1], header
        assert ranged.headers["content-range"] == f"bytes {first}-{last}/16", header
        assert ranged.headers["content-length"] == str(last + 1 - first), header
    for header in ("bytes=16-", "bytes=16-20", "bytes=99-100", "bytes=-0"):
        refused = await client.get(url, headers={"range": header})
        assert refused.status_code == 416, header
        assert refused.headers["content-range"] == "bytes */16", header
        assert "past the end of its 16 bytes" in refused.text, header
        assert refused.headers["x-content-type-options"] == "nosniff"
    for header in ("bytes=5-3", "bytes=abc", "items=0-3", "bytes=0-1,3-4", "bytes=-", "bytes 1-2"):
        whole = await client.get(url, headers={"range": header})
        assert (whole.status_code, whole.content) == (200, content), header
        assert "content-range" not in whole.headers, header

    empty = (await upload_attachment(client, csrf, issue.id, b"", "empty.txt")).json()["url"]
    assert (await client.get(empty)).status_code == 200
    for header in ("bytes=0-", "bytes=-5"):
        refused = await client.get(empty, headers={"range": header})
        assert refused.status_code == 416, header
        assert refused.headers["content-range"] == "bytes */0", header
