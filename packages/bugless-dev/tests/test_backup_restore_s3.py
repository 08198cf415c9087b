"""docs/backup.md followed for a deployment whose attachments are in an S3 bucket.

A tracker keeps attachment content in the ``s3`` blob store (a real moto
server; both buckets versioned, with the guide's lifecycle rule). Files go up
through the API (one larger than a part, so a multipart upload and a
server-side copy; one on two issues, so one object; one deleted before the
backup) and through the web, and last night's copy of the bucket is made. The
backup is the guide's: ``pg_dump`` of both databases, then the bucket copied
to the backup bucket with ``--delete``; between the two an attachment is
deleted, so the copy lacks an object the dump lists. Then both are destroyed
(the databases dropped; every version, delete marker and the bucket itself
deleted), and the restore is the guide's: ``pg_restore`` into empty
databases, a new bucket filled from the backup bucket, the guide's listing of
what the database serves against what the bucket holds, the missing object
brought back from the backup bucket's versions, and a tracker started with
the same keys. Every attachment must then download byte for byte through the
API and the web, with the history of before; the one deleted before the dump
stays deleted.

The S3 steps go through the SDK, one call per command of the guide
(``aws s3 sync``, ``aws s3 ls``, ``aws s3api list-object-versions`` and
``copy-object``); the SQL of the listing is the guide's, word for word (the
test reads it from the page).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import asyncpg
import httpx
import pytest
from backup_drill import PASSWORD, api_client, drill_stack, dump, restore, sign_in
from s3_drill_support import BUCKET, PART_BYTES, PREFIX, make_bucket, s3_client, s3_environment

from bugless_api.client import BuglessClient
from bugless_core.errors import ContentGone
from bugless_dev.pki import LocalPki
from bugless_dev.postgres import ThrowawayPostgres
from bugless_dev.stack import RunningService
from bugless_proto import v1
from bugless_testing.s3 import S3TestServer

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import ObjectIdentifierTypeDef

GUIDE = Path(__file__).resolve().parents[3] / "docs" / "backup.md"
BACKUP_BUCKET = "bugless-attachments-backup"
MIB = 1024 * 1024


async def keys_under(s3: S3Client, bucket: str, prefix: str) -> list[str]:
    """``aws s3 ls --recursive s3://BUCKET/PREFIX | awk '{print $4}'``: current objects' keys."""
    keys: list[str] = []
    async for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return sorted(keys)


async def sync(
    s3: S3Client, source: str, target: str, *, delete: bool = False, exclude: str = ""
) -> tuple[int, int]:
    """``aws s3 sync [--delete] [--exclude 'EXCLUDE*'] s3://SOURCE/PREFIX s3://TARGET/PREFIX``.

    An object never changes (its key is its content's hash), so one the target
    has is never copied again. Returns (objects copied, objects deleted).
    """

    def included(keys: list[str]) -> list[str]:
        return [k for k in keys if not (exclude and k.startswith(PREFIX + exclude))]

    there = included(await keys_under(s3, target, PREFIX))
    wanted = included(await keys_under(s3, source, PREFIX))
    copied = [k for k in wanted if k not in set(there)]
    for key in copied:
        await s3.copy_object(Bucket=target, Key=key, CopySource={"Bucket": source, "Key": key})
    deleted = sorted(set(there) - set(wanted)) if delete else []
    for key in deleted:
        await s3.delete_object(Bucket=target, Key=key)
    return len(copied), len(deleted)


async def bring_back_newest_versions(
    s3: S3Client, source: str, target: str, keys: list[str]
) -> None:
    """The guide's loop: each key's newest version in ``source`` copied to ``target``.

    ``aws s3api list-object-versions --bucket SOURCE --prefix KEY --query
    'Versions[0].VersionId'``, then ``aws s3api copy-object --bucket TARGET --key
    KEY --copy-source "SOURCE/KEY?versionId=VERSION"``.
    """
    for key in keys:
        versions = await s3.list_object_versions(Bucket=source, Prefix=key)
        version = versions["Versions"][0]["VersionId"]
        await s3.copy_object(
            Bucket=target, Key=key, CopySource={"Bucket": source, "Key": key, "VersionId": version}
        )


async def destroy_bucket(s3: S3Client, bucket: str) -> None:
    """The disaster: every version and delete marker removed, then the bucket itself."""
    paginator = s3.get_paginator("list_object_versions")
    async for page in paginator.paginate(Bucket=bucket):
        doomed: list[ObjectIdentifierTypeDef] = [
            {"Key": item["Key"], "VersionId": item["VersionId"]}
            for item in page.get("Versions", [])
        ]
        doomed += [
            {"Key": item["Key"], "VersionId": item["VersionId"]}
            for item in page.get("DeleteMarkers", [])
        ]
        if doomed:
            await s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed})
    await s3.delete_bucket(Bucket=bucket)


def listed_objects_statement() -> str:
    """The guide's SQL listing the object key of every attachment the database still serves."""
    match = re.search(r'psql "\$RESTORED_URL" -At -c "(?P<sql>[^"]+)"', GUIDE.read_text())
    assert match is not None, f"{GUIDE.name} no longer gives the listing statement"
    return match.group("sql")


async def listed_objects(database_url: str) -> list[str]:
    """What the guide's statement prints on the restored database."""
    conn = await asyncpg.connect(database_url)
    try:
        return sorted(row[0] for row in await conn.fetch(listed_objects_statement()))
    finally:
        await conn.close()


async def web_downloads(web: RunningService, urls: Mapping[int, str]) -> dict[int, bytes]:
    """Each attachment's bytes as ann's browser gets them from the web frontend."""
    assert web.url is not None
    async with httpx.AsyncClient(base_url=web.url, timeout=60) as browser:
        await sign_in(browser, "ann")
        got: dict[int, bytes] = {}
        for attachment_id, url in urls.items():
            answer = await browser.get(url)
            assert answer.status_code == 200, (url, answer.status_code, answer.text[:300])
            got[attachment_id] = answer.content
        return got


async def history(client: BuglessClient, issue_id: int) -> list[v1.HistoryEntry]:
    return [entry async for entry in client.iter_history(issue_id)]


async def test_a_restored_dump_and_bucket_copy_serve_every_attachment_through_the_api_and_web(
    postgres_server: ThrowawayPostgres, s3_server: S3TestServer, tmp_path: Path
) -> None:
    s3_env = s3_environment(s3_server, tmp_path)
    async with s3_client(s3_server) as s3:
        await make_bucket(s3, BUCKET)
        await make_bucket(s3, BACKUP_BUCKET)

    pki = LocalPki.open(tmp_path / "pki")
    bot = pki.client_certificate_for("backup-bot", groups=["component-creators"])
    model_url = postgres_server.create_database("s3_backup_model")
    auth_url = postgres_server.create_database("s3_backup_auth")
    trace = b"Traceback (most recent call last):\n  the replica lost its bucket\n" * 50
    files = {
        "core.bin": secrets.token_bytes(PART_BYTES + MIB // 2),
        "screen.png": b"\x89PNG\r\n\x1a\n" + secrets.token_bytes(40_000),
        "late.log": b"deleted after the dump, before the bucket's copy\n" * 20,
        "leak.txt": b"a secret pasted by mistake",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    content: dict[int, bytes] = {}  # attachment id -> bytes: every one that must come back

    before = drill_stack(tmp_path / "before", pki, model_url, auth_url, extra_env=s3_env)
    try:
        await asyncio.to_thread(before.migrate)
        await asyncio.to_thread(before.start_backends)
        api = await asyncio.to_thread(before.start_api)
        web = await asyncio.to_thread(before.start_web)
        await asyncio.to_thread(before.add_user, "ann", PASSWORD, admin=True)
        async with api_client(before, api, bot) as client:
            component = await client.create_component("Storage")
            first = await client.create_issue("The bucket lost a region", component.id)
            second = await client.create_issue("Screenshots look alike", component.id)
            await client.comment(first.id, "Seen on the nightly restore test.")
            attached: dict[str, v1.Attachment] = {}
            for issue_id, name in [
                (first.id, "core.bin"),  # a multipart upload and a server-side copy
                (first.id, "screen.png"),
                (second.id, "screen.png"),  # the same bytes: one object
                (second.id, "late.log"),
                (second.id, "leak.txt"),
            ]:
                done = await client.attach(issue_id, tmp_path / name, comment=f"the {name}")
                assert done.attachment is not None
                attached[name] = done.attachment
                content[done.attachment.id] = files[name]
            assert web.url is not None
            async with httpx.AsyncClient(base_url=web.url, timeout=60) as browser:
                csrf = await sign_in(browser, "ann")
                uploaded = await browser.post(
                    f"/issues/{first.id}/attachments",
                    content=trace,
                    headers={
                        "x-csrf-token": csrf,
                        "x-file-name": quote("trace.txt"),
                        "content-type": "text/plain",
                    },
                )
                assert uploaded.status_code == 201, uploaded.text
                content[int(uploaded.json()["id"])] = trace
            async with s3_client(s3_server) as s3:  # the copy of the night before
                assert await sync(s3, BUCKET, BACKUP_BUCKET, delete=True, exclude="uploads/") == (
                    5,
                    0,
                )
            leak = attached["leak.txt"]
            await client.delete_attachment(leak.id)  # its content goes: nothing else refers to it
            del content[leak.id]

            kept = {i: await history(client, i) for i in (first.id, second.id)}
            listed = {
                a.id: a for i in (first.id, second.id) for a in await client.list_attachments(i)
            }
            assert sorted(listed) == sorted(content)
            for attachment_id, attachment in listed.items():
                assert attachment.sha256 == hashlib.sha256(content[attachment_id]).hexdigest()

            # The backup, in the guide's order: the dump, then the bucket's copy.
            model_dump, auth_dump = tmp_path / "model.dump", tmp_path / "auth.dump"
            await asyncio.to_thread(dump, postgres_server, model_url, model_dump)
            await asyncio.to_thread(dump, postgres_server, auth_url, auth_dump)
            # Deleted between the two: the dump lists it, the copy will not have it.
            await client.delete_attachment(attached["late.log"].id)
            async with s3_client(s3_server) as s3:
                copied = await sync(s3, BUCKET, BACKUP_BUCKET, delete=True, exclude="uploads/")
            assert copied == (0, 2), "nothing new; leak.txt's and late.log's objects deleted"
        token_key = Path(before.env["BUGLESS_AUTH_TOKEN_KEY_FILES"])
    finally:
        await asyncio.to_thread(before.stop)

    # The disaster: both databases and the bucket are gone.
    assert postgres_server.create_database("s3_backup_model") == model_url
    assert postgres_server.create_database("s3_backup_auth") == auth_url
    async with s3_client(s3_server) as s3:
        await destroy_bucket(s3, BUCKET)

    # The restore, as the guide gives it.
    await asyncio.to_thread(restore, postgres_server, model_dump, model_url)
    await asyncio.to_thread(restore, postgres_server, auth_dump, auth_url)
    late_key = f"{PREFIX}{attached['late.log'].sha256[:2]}/{attached['late.log'].sha256}"
    async with s3_client(s3_server) as s3:
        await make_bucket(s3, BUCKET)
        assert await sync(s3, BACKUP_BUCKET, BUCKET) == (3, 0)
        needed = await listed_objects(model_url)
        assert len(needed) == 4, "core.bin, screen.png (once), late.log, trace.txt"
        missing = sorted(set(needed) - set(await keys_under(s3, BUCKET, PREFIX)))
        assert missing == [late_key]
        await bring_back_newest_versions(s3, BACKUP_BUCKET, BUCKET, missing)
        assert sorted(set(needed) - set(await keys_under(s3, BUCKET, PREFIX))) == []

    after = drill_stack(
        tmp_path / "after", pki, model_url, auth_url, extra_env=s3_env, token_key_file=token_key
    )
    try:
        await asyncio.to_thread(after.migrate)  # at head already: nothing to apply
        await asyncio.to_thread(after.start_backends)
        api = await asyncio.to_thread(after.start_api)
        web = await asyncio.to_thread(after.start_web)
        async with api_client(after, api, bot) as client:
            for issue_id, entries in kept.items():
                assert await history(client, issue_id) == entries
            downloads = tmp_path / "downloads"
            downloads.mkdir()
            for attachment_id, expected in content.items():
                got = await client.download_attachment(
                    attachment_id, downloads / str(attachment_id)
                )
                assert got == listed[attachment_id]
                assert (downloads / str(attachment_id)).read_bytes() == expected, attachment_id
            with pytest.raises(ContentGone):
                await client.download_attachment(leak.id, downloads / "leak")
        urls = {i: f"/attachments/{i}/{quote(a.name)}" for i, a in listed.items()}
        assert await web_downloads(web, urls) == content
    finally:
        await asyncio.to_thread(after.stop)
