"""A file's description redacted alone: the issue page keeps the file, without the text."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime
from typing import Any

from litestar.testing import AsyncTestClient
from web_support import World, sign_in

from bugless_core.clients import acting_as, call
from bugless_proto import v1


async def _import_described(world: World, description: str) -> int:
    """Import an issue whose one entry attaches a file with ``description``; its id."""
    created = await asyncio.to_thread(
        world.stack.add_user, f"importer-{secrets.token_hex(3)}", groups=["importers"]
    )
    importer = v1.Caller(user_id=created["user_id"], admin=True, import_issues=True)
    channel = world.stack.client_address("model", "import").channel()
    content = b"the trace\n"
    try:
        header = v1.UploadAttachmentHeader(
            caller=importer, name="trace.txt", size=len(content), import_content=True
        )
        assertion = world.stack.assertion_for(
            importer.user_id, permissions=["admin", "import_issues"]
        )
        stub = v1.ModelStub(channel)
        with acting_as(assertion):
            stored = await call(
                stub.upload_attachment,
                [
                    v1.UploadAttachmentRequest(header=header),
                    v1.UploadAttachmentRequest(chunk=content),
                ],
            )
        assert stored.attachment is not None
        file = v1.ImportedAttachment(
            name="trace.txt",
            sha256=stored.attachment.sha256,
            size=len(content),
            description=description,
        )
        response = await call(
            world.stack.acting_model(stub).import_issue,
            v1.ImportIssueRequest(
                caller=importer,
                external_id=f"trac:described{secrets.token_hex(4)}",
                fields=v1.IssueFields(
                    title="A described file", component_id=world.components["Platform"]
                ),
                reporter=world.users["carol"],
                created_at=datetime(2019, 1, 2, 3, 4, tzinfo=UTC),
                history=[
                    v1.ImportedEntry(
                        author=world.users["carol"],
                        created_at=datetime(2019, 1, 2, 4, 0, tzinfo=UTC),
                        attachments=[file],
                    )
                ],
            ),
        )
    finally:
        channel.close()
    assert response.issue is not None
    return response.issue.id


async def test_an_admin_redacts_a_files_description_and_the_page_keeps_the_file(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """The description goes from the timeline, the attachment list and search; the file stays.

    The redaction entry names the attachment: "redacted the description of
    attachment N".
    """
    secret = f"sekrit{secrets.token_hex(4)}"
    issue_id = await _import_described(world, f"The password is {secret}.")
    (file,) = (
        await call(
            model.list_attachments,
            v1.ListAttachmentsRequest(caller=world.admin, issue_id=issue_id),
        )
    ).attachments
    await sign_in(client, "alice")
    before = (await client.get(f"/issues/{issue_id}")).text
    assert before.count(secret) == 2  # the timeline and the attachment list
    issue = await call(model.get_issue, v1.GetIssueRequest(caller=world.admin, issue_id=issue_id))
    await call(
        model.redact,
        v1.RedactRequest(
            caller=world.admin,
            issue_id=issue_id,
            expected_version=issue.version,
            target=v1.RedactionTarget.ATTACHMENT_DESCRIPTION,
            attachment_id=file.id,
        ),
    )
    page = (await client.get(f"/issues/{issue_id}")).text
    assert secret not in page
    assert f"redacted the description of attachment {file.id}" in page
    assert "trace.txt</a>" in page  # still a link to the file
    assert "content redacted" not in page
    found = await client.get("/search", params={"q": secret})
    assert f'href="/issues/{issue_id}"' not in found.text


async def _issue(model: v1.ModelStub, world: World, issue_id: int) -> v1.Issue:
    return await call(model.get_issue, v1.GetIssueRequest(caller=world.admin, issue_id=issue_id))


async def _file(model: v1.ModelStub, world: World, issue_id: int) -> v1.Attachment:
    (file,) = (
        await call(
            model.list_attachments,
            v1.ListAttachmentsRequest(caller=world.admin, issue_id=issue_id),
        )
    ).attachments
    return file


async def test_an_admin_redacts_a_files_description_then_its_content_from_the_issue_page(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """Each form posts, redirects to the record entry with a notice, and the Model did it.

    Once the description has gone only the content's form is offered; once
    the content has gone neither is.
    """
    secret = f"sekrit{secrets.token_hex(4)}"
    issue_id = await _import_described(world, f"The password is {secret}.")
    file = await _file(model, world, issue_id)
    csrf = await sign_in(client, "alice")
    action = f"/issues/{issue_id}/attachments/{file.id}/redact"
    page = (await client.get(f"/issues/{issue_id}")).text
    assert 'class="redact-form redact-content"' in page
    assert 'class="redact-form redact-description"' in page
    version = (await _issue(model, world, issue_id)).version
    response = await client.post(
        action,
        data={"_csrf": csrf, "version": str(version), "target": "description"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"/issues/{issue_id}#entry-{version + 1}"
    page = (await client.get(f"/issues/{issue_id}")).text
    assert f"Redacted the description of attachment {file.id}, for good." in page
    assert secret not in page
    assert f"redacted the description of attachment {file.id}" in page
    assert 'class="redact-form redact-content"' in page
    assert 'class="redact-form redact-description"' not in page
    kept = await _file(model, world, issue_id)
    assert (kept.description, kept.redacted) == ("", False)
    response = await client.post(
        action,
        data={"_csrf": csrf, "version": str(version + 1), "target": "content"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"/issues/{issue_id}#entry-{version + 2}"
    page = (await client.get(f"/issues/{issue_id}")).text
    assert f"Redacted the content of attachment {file.id}, for good." in page
    assert f"redacted attachment {file.id}" in page
    assert "content redacted" in page
    assert 'class="redact-form' not in page.split('id="attachments"')[1]
    assert (await _file(model, world, issue_id)).redacted


async def test_redacting_a_file_is_refused_to_a_non_admin_and_when_already_redacted(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """Bob sees no form and his POST is a 403 page; a second redaction is a 4xx page saying why.

    Nothing changes on either refusal: the issue's version and the file stay.
    """
    issue_id = await _import_described(world, "keep this description")
    file = await _file(model, world, issue_id)
    action = f"/issues/{issue_id}/attachments/{file.id}/redact"
    version = (await _issue(model, world, issue_id)).version
    csrf = await sign_in(client, "bob")
    page = (await client.get(f"/issues/{issue_id}")).text
    assert "trace.txt</a>" in page
    assert "redact-content" not in page
    assert "redact-description" not in page
    for target in ("content", "description"):
        refused = await client.post(
            action, data={"_csrf": csrf, "version": str(version), "target": target}
        )
        assert refused.status_code == 403, refused.text
        assert "admin" in refused.text.lower()
    assert (await _issue(model, world, issue_id)).version == version
    assert await _file(model, world, issue_id) == file

    csrf = await sign_in(client, "alice")
    done = await client.post(
        action,
        data={"_csrf": csrf, "version": str(version), "target": "content"},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    for target, reason in (
        ("content", "was already redacted"),
        ("description", "its content was redacted with it"),
    ):
        again = await client.post(
            action, data={"_csrf": csrf, "version": str(version + 1), "target": target}
        )
        assert 400 <= again.status_code < 500, again.text
        assert reason in again.text
    unknown = await client.post(
        action, data={"_csrf": csrf, "version": str(version + 1), "target": "everything"}
    )
    assert unknown.status_code == 400, unknown.text
    assert "content" in unknown.text
    assert "description" in unknown.text
    assert (await _issue(model, world, issue_id)).version == version + 1
