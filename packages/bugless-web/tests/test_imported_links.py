"""``/imported?id=...``: an imported reference finds its issue in bugless, or says it is not there.

What ``bugless import`` links a source's ``#12`` to, so that migrated
cross-references outlive the source tracker (bugless_core.issue_references).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from web_support import World, sign_in

from bugless_core.clients import acting_as, call
from bugless_core.issue_references import imported_file_link, imported_link
from bugless_proto import v1
from bugless_web import WebSettings, create_app


async def _import(
    world: World, external_id: str, component: str, file: tuple[str, bytes] | None = None
) -> int:
    """Import one issue as ``external_id`` into ``component``, as an import job does.

    With ``file`` (name, content): its content stored first, then attached by
    the issue's one history entry, as ``bugless import`` copies a file.
    """
    created = await asyncio.to_thread(
        world.stack.add_user, f"importer-{secrets.token_hex(3)}", groups=["importers"]
    )
    importer = v1.Caller(user_id=created["user_id"], admin=True, import_issues=True)
    channel = world.stack.client_address("model", "import").channel()
    history: list[v1.ImportedEntry] = []
    try:
        if file is not None:
            name, content = file
            header = v1.UploadAttachmentHeader(
                caller=importer, name=name, size=len(content), import_content=True
            )
            assertion = world.stack.assertion_for(
                importer.user_id, permissions=["admin", "import_issues"]
            )
            with acting_as(assertion):
                stored = await call(
                    v1.ModelStub(channel).upload_attachment,
                    [
                        v1.UploadAttachmentRequest(header=header),
                        v1.UploadAttachmentRequest(chunk=content),
                    ],
                )
            assert stored.attachment is not None
            history.append(
                v1.ImportedEntry(
                    author=world.users["carol"],
                    created_at=datetime(2019, 1, 2, 4, 0, tzinfo=UTC),
                    comment="The trace.",
                    attachments=[
                        v1.ImportedAttachment(
                            name=name, sha256=stored.attachment.sha256, size=len(content)
                        )
                    ],
                )
            )
        response = await call(
            world.stack.acting_model(v1.ModelStub(channel)).import_issue,
            v1.ImportIssueRequest(
                caller=importer,
                external_id=external_id,
                fields=v1.IssueFields(
                    title=f"Imported {external_id}", component_id=world.components[component]
                ),
                reporter=world.users["carol"],
                description="From the old tracker",
                created_at=datetime(2019, 1, 2, 3, 4, tzinfo=UTC),
                history=history,
            ),
        )
    finally:
        channel.close()
    assert response.issue is not None
    return response.issue.id


async def test_an_imported_reference_redirects_to_the_issue_imported_with_that_id(
    client: AsyncTestClient[Any], world: World
) -> None:
    external_id = f"github:org/links{secrets.token_hex(3)}#56"
    issue_id = await _import(world, external_id, "Platform")
    await sign_in(client, "bob")
    # As the import writes it, with the source's URL along (never followed).
    link = imported_link(external_id, "https://evil.example/phish")
    assert link.startswith("/imported?id=github%3Aorg%2Flinks"), link
    response = await client.get(link, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"/issues/{issue_id}"
    page = await client.get(link)
    assert page.status_code == 200
    assert f"Imported {external_id}" in page.text


async def test_an_imported_file_link_redirects_to_the_attachment_with_that_content(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """What the import writes for a file the source's text linked (GitHub's pasted files)."""
    external_id = f"github:org/files{secrets.token_hex(3)}#7"
    content = b"trace " + secrets.token_bytes(16)
    issue_id = await _import(world, external_id, "Platform", file=("trace log.txt", content))
    await sign_in(client, "bob")
    sha256 = hashlib.sha256(content).hexdigest()
    source = "https://github.com/user-attachments/files/1/trace.log"
    link = imported_file_link(external_id, sha256, source)
    response = await client.get(link, follow_redirects=False)
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith("/attachments/")
    assert location.endswith("/trace%20log.txt")
    download = await client.get(location)
    assert download.status_code == 200
    assert download.content == content
    stored = (
        await call(
            model.list_attachments,
            v1.ListAttachmentsRequest(caller=world.admin, issue_id=issue_id),
        )
    ).attachments
    await call(
        model.delete_attachment,
        v1.DeleteAttachmentRequest(caller=world.admin, attachment_id=stored[0].id),
    )
    deleted = await client.get(link, follow_redirects=False)
    assert deleted.status_code == 303
    assert deleted.headers["location"] == f"/issues/{issue_id}#attachments", (
        "deleted since: the issue's files, whose history says so"
    )


async def test_a_link_to_a_file_the_import_left_out_is_a_404_naming_file_and_issue(
    listing: AsyncTestClient[Any], world: World
) -> None:
    """Trac's link in one ticket to another ticket's file the Model refused at import.

    Before, it led to that issue's files, as if the link were merely stale.
    """
    external_id = f"trac:{secrets.randbelow(10**9) + 10**9}"
    issue_id = await _import(world, external_id, "Platform", file=("small.txt", b"kept"))
    await sign_in(listing, "bob")
    refused = hashlib.sha256(b"a core dump over the limit").hexdigest()
    source = "https://trac.example.org/attachment/ticket/12/core%20dump.bin"
    response = await listing.get(
        imported_file_link(external_id, refused, source), follow_redirects=False
    )
    assert response.status_code == 404
    assert "location" not in response.headers
    assert (
        f"The file <code>core dump.bin</code> was not imported onto "
        f'<a href="/issues/{issue_id}">issue {issue_id}</a>'
    ) in response.text
    assert f'<a href="{source}" rel="nofollow noopener noreferrer">' in response.text
    # A source the tier does not list names nothing: the content's hash instead.
    unlisted = await listing.get(
        imported_file_link(external_id, refused, "https://evil.example/x/Click%20here.exe")
    )
    assert unlisted.status_code == 404
    assert f"The file with SHA-256 <code>{refused}</code> was not imported" in unlisted.text
    assert "Click" not in unlisted.text
    assert "evil.example" not in unlisted.text


async def test_an_issue_the_viewer_cannot_see_is_not_found_like_any_other(
    client: AsyncTestClient[Any], world: World
) -> None:
    external_id = f"trac:SECRET{secrets.token_hex(3)}#7"
    issue_id = await _import(world, external_id, "Secret")
    await sign_in(client, "bob")
    response = await client.get(imported_link(external_id), follow_redirects=False)
    assert response.status_code == 404
    assert f"<code>{external_id}</code>" in response.text
    assert f"/issues/{issue_id}" not in response.text
    await sign_in(client, "alice")  # an admin sees the Secret component
    allowed = await client.get(imported_link(external_id), follow_redirects=False)
    assert allowed.status_code == 303
    assert allowed.headers["location"] == f"/issues/{issue_id}"


@pytest.fixture
async def listing(
    web_settings: WebSettings,
) -> AsyncIterator[AsyncTestClient[Any]]:
    """A client of a tier that lists the old Trac it imported from (--imported-source)."""
    settings = dataclasses.replace(
        web_settings, imported_sources=("https://TRAC.example.org", "https://github.com/acme/")
    )
    async with AsyncTestClient(create_app(settings), base_url="http://testserver.local") as tier:
        yield tier


async def test_an_issue_not_imported_is_a_404_naming_the_id_and_linking_the_source(
    listing: AsyncTestClient[Any], client: AsyncTestClient[Any]
) -> None:
    await sign_in(listing, "bob")
    external_id = f"trac:{secrets.randbelow(10**9) + 10**9}"
    source = "https://trac.example.org/ticket/4242"
    response = await listing.get(imported_link(external_id, source), follow_redirects=False)
    assert response.status_code == 404
    assert "location" not in response.headers
    assert f"No issue imported as <code>{external_id}</code>" in response.text
    assert f'<a href="{source}" rel="nofollow noopener noreferrer">' in response.text
    bare = await listing.get(imported_link(external_id))
    assert bare.status_code == 404
    assert "old tracker" not in bare.text, "no source given: none shown"
    # A tier that lists no old tracker shows no link, whatever source= says.
    await sign_in(client, "bob")
    unlisted = await client.get(imported_link(external_id, source))
    assert unlisted.status_code == 404
    assert "trac.example.org" not in unlisted.text


async def test_crafted_parameters_never_redirect_off_site_nor_link_a_script(
    listing: AsyncTestClient[Any],
) -> None:
    await sign_in(listing, "bob")
    crafted = [
        {"id": "//evil.example", "source": "https://evil.example/"},
        {"id": "https://evil.example/", "source": "//evil.example"},
        {"id": 'trac:1" OR status:open', "source": "javascript:alert(1)"},
        {"id": "trac:1\\", "source": "data:text/html,<script>alert(1)</script>"},
        {"id": "", "source": "https:/\\evil.example"},
        {"id": "trac:" + "9" * 300, "source": "http://evil.example/\x00x"},
        # An id the import could have written, with a source no import wrote:
        # a link to anywhere on this site's own page would serve phishing.
        {"id": "trac:12", "source": "https://evil.example/ticket/12"},
        {"id": "trac:12", "source": "https://trac.example.org.evil.example/ticket/12"},
        {"id": "trac:12", "source": "https://trac.example.org@evil.example/ticket/12"},
        {"id": "trac:12", "source": "https://trac.example.org\\@evil.example/"},
        {"id": "github:acme/x#1", "source": "https://github.com/acme-evil.example/x/issues/1"},
        {"id": "github:acme/x#1", "source": "https://github.com/acme/../evil.example/x"},
        {"id": "github:acme/x#1", "source": "https://github.com/acme/%2e%2e/evil.example/x"},
    ]
    for params in crafted:
        response = await listing.get("/imported", params=params, follow_redirects=False)
        assert response.status_code == 404, params
        assert "location" not in response.headers, params
        assert "evil.example" not in response.text.replace(f"<code>{params['id']}</code>", ""), (
            params
        )
        assert "javascript:" not in response.text
        assert "<script>alert" not in response.text
        assert "old tracker" not in response.text, params


def test_an_imported_source_must_be_an_http_base_url(web_settings: WebSettings) -> None:
    for bad in ("trac.example.org", "javascript:alert(1)", "https://u:p@trac.example.org/"):
        with pytest.raises(ValueError, match="--imported-source"):
            dataclasses.replace(web_settings, imported_sources=(bad,))


async def test_signed_out_the_link_asks_to_sign_in_and_comes_back(
    client: AsyncTestClient[Any],
) -> None:
    response = await client.get(imported_link("trac:12"), follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/signin?next=/imported%3Fid%3Dtrac%253A12"
