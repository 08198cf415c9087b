"""An attachment the database lists but the S3 bucket lacks, as the API and the web show it.

After a restore (docs/backup.md) the database may list a file whose object
the bucket's copy does not have. Until the operator brings it back, the
people and bots downloading it must get a clear NOT_FOUND saying the content
is missing from storage and whom to tell, not an internal error or a
message about a blob hash; the attachment's issue keeps working. A real
moto server holds the bucket; the object is deleted behind the tracker's back.
"""

from __future__ import annotations

import asyncio
import html
import subprocess
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from backup_drill import PASSWORD, api_client, drill_stack, sign_in
from s3_drill_support import BUCKET, PREFIX, make_bucket, s3_client, s3_environment

from bugless_core.errors import NotFound
from bugless_dev.pki import LocalPki
from bugless_dev.postgres import ThrowawayPostgres
from bugless_testing.program import BUGLESS_SCRIPT
from bugless_testing.s3 import S3TestServer

MISSING = "the file's content is missing from storage; tell the operator"


async def test_content_missing_from_the_bucket_is_a_clear_not_found_for_api_cli_and_web(
    postgres_server: ThrowawayPostgres, s3_server: S3TestServer, tmp_path: Path
) -> None:
    s3_env = s3_environment(s3_server, tmp_path)
    async with s3_client(s3_server) as s3:
        await make_bucket(s3, BUCKET)
    pki = LocalPki.open(tmp_path / "pki")
    bot = pki.client_certificate_for("missing-bot", groups=["component-creators"])
    stack = drill_stack(
        tmp_path / "stack",
        pki,
        postgres_server.create_database("missing_model"),
        postgres_server.create_database("missing_auth"),
        extra_env=s3_env,
    )
    (tmp_path / "trace.log").write_bytes(b"the trace the restore lost\n" * 40)
    try:
        await asyncio.to_thread(stack.migrate)
        model, _ = await asyncio.to_thread(stack.start_backends)
        api = await asyncio.to_thread(stack.start_api)
        web = await asyncio.to_thread(stack.start_web)
        await asyncio.to_thread(stack.add_user, "ann", PASSWORD, admin=True)
        async with api_client(stack, api, bot) as client:
            component = await client.create_component("Storage")
            issue = await client.create_issue("The restore lost a file", component.id)
            done = await client.attach(issue.id, tmp_path / "trace.log")
            attachment = done.attachment
            assert attachment is not None
            key = f"{PREFIX}{attachment.sha256[:2]}/{attachment.sha256}"
            async with s3_client(s3_server) as s3:
                await s3.delete_object(Bucket=BUCKET, Key=key)

            target = tmp_path / "downloads" / "trace.log"
            target.parent.mkdir()
            with pytest.raises(NotFound) as raised:
                await client.download_attachment(attachment.id, target)
            assert MISSING in raised.value.message
            assert f"attachment {attachment.id} (trace.log)" in raised.value.message
            assert raised.value.reason == "CONTENT_MISSING"
            assert raised.value.metadata["sha256"] == attachment.sha256
            assert not target.exists(), "a failed download leaves no file"
            # The listing and the issue still answer: only the content is missing.
            assert [a.id for a in await client.list_attachments(issue.id)] == [attachment.id]
            assert (await client.get_issue(issue.id)).title == "The restore lost a file"

        bugless = BUGLESS_SCRIPT
        cli = await asyncio.to_thread(
            subprocess.run,
            [bugless, "attachment", "get", str(attachment.id)],
            cwd=target.parent,
            env={
                "PATH": "/usr/bin:/bin",
                "HOME": str(tmp_path),
                "BUGLESS_API": f"127.0.0.1:{api.port}",
                "BUGLESS_CERT": str(bot.cert),
                "BUGLESS_KEY": str(bot.key),
                "BUGLESS_CA": str(stack.pki.ca_file),
            },
            capture_output=True,
            text=True,
            check=False,
        )
        assert cli.returncode == 3, cli.stderr
        assert MISSING in cli.stderr
        assert not target.exists()

        assert web.url is not None
        async with httpx.AsyncClient(base_url=web.url, timeout=60) as browser:
            await sign_in(browser, "ann")
            page = await browser.get(f"/attachments/{attachment.id}/{quote(attachment.name)}")
            assert page.status_code == 404, page.text[:300]
            shown = html.unescape(page.text)
            assert MISSING in shown, shown[shown.find("<main") :][:600]
            assert (await browser.get(f"/issues/{issue.id}")).status_code == 200

        # The operator's side: the Model's log names the object to bring back.
        logged = model.log.read_text()
        assert f"its content {attachment.sha256} is missing from the s3 blob store" in logged
    finally:
        await asyncio.to_thread(stack.stop)
