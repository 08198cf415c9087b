"""An object deleted while its content is downloaded, on a real S3 server (moto).

Before, :meth:`BlobStore.open` only checked that the object was there (a
HEAD) and the GET came with the first read, after the Model had sent the
attachment and the web its 200: an object deleted in between cut the
download mid-stream with ``blob <sha>: it was deleted while being read``.
The GET now starts in ``open``, so a deletion before it fails the open (the
Model then answers NOT_FOUND before anything is sent), and one after it no
longer matters: the GET under way reads to its end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from s3_support import StoreOpener, settings_on

from bugless_blob_s3 import S3BlobStore
from bugless_core.errors import NotFound
from bugless_testing.blob_contracts import chunked, random_content
from bugless_testing.s3 import S3TestServer

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

MIB = 1024 * 1024


async def test_an_object_deleted_after_the_open_is_read_to_its_end(
    open_store: StoreOpener, s3_client: S3Client, bucket: str
) -> None:
    store = await open_store()
    content = random_content(3 * MIB)
    ref = await store.put(chunked(content, MIB))
    parts: list[bytes] = []
    async with await store.open(ref.sha256) as reader:
        await s3_client.delete_object(Bucket=bucket, Key=store.key_of(ref.sha256))
        async for chunk in reader:
            parts.append(chunk)
    assert b"".join(parts) == content
    assert not await store.exists(ref.sha256)


class _DeletedAfterTheCheck(S3BlobStore):
    """The store, with the object deleted right after ``open`` found it (the race, made sure)."""

    async def _size(self, sha256: str) -> int | None:
        size = await super()._size(sha256)
        await self.delete(sha256)
        return size


async def test_an_object_deleted_between_the_check_and_the_read_fails_the_open(
    s3_server: S3TestServer, bucket: str
) -> None:
    store = await _DeletedAfterTheCheck.connect(settings_on(s3_server, bucket))
    try:
        ref = await store.put(chunked(random_content(MIB), MIB))
        with pytest.raises(NotFound, match=f"^blob {ref.sha256}: it was deleted while being read$"):
            await store.open(ref.sha256)
    finally:
        await store.close()
