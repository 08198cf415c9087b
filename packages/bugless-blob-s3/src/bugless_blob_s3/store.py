"""The s3 blob store: content in an S3-compatible bucket, one object per SHA-256.

Keys are ``{prefix}{sha256[:2]}/{sha256}``: the two-digit fan-out keeps
listings and per-prefix request rates spread however many blobs there are.

**Writing when the hash is known only at the end.** A put cannot name its
final key until the last byte has streamed through, so:

* content of at most one part (``part_bytes``, 8 MiB by default: most
  screenshots and logs) is held, hashed, and written with one PUT straight
  to its final key, after a HEAD showed it is not there yet (dedup without
  writing);
* larger content streams as a multipart upload to a temporary key
  ``{prefix}uploads/{start second}-{random}``, then, if the final key does not exist yet,
  is copied server-side to it (no byte goes through bugless twice), and the
  temporary object is deleted either way.

The alternative, spooling to a local file until the hash is known and then
uploading to the final key, would need disk on every replica for the largest
attachment times the concurrent uploads, and would start the upload only
once the whole file has arrived; the copy costs the store a server-side copy
of large blobs only. A failed or cancelled put aborts its multipart upload and
deletes its temporary object; a process killed mid-put leaves them to the
bucket's lifecycle rules (see the README) and to the Model's sweep
(:meth:`S3BlobStore.remove_abandoned`). Concurrent puts of one large
content each copy the same bytes to the same key, which is harmless.

Server-side encryption (``AES256`` or ``aws:kms`` with a key) is requested on
every write, the copies included: S3 does not carry a source's encryption
over to a copy.

This module imports no S3 client: registering the store costs a process
nothing; :mod:`bugless_blob_s3._objects` (aiobotocore) is imported on connect.
"""

from __future__ import annotations

import base64
import re
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Self

from bugless_blob_s3.settings import S3BlobSettings
from bugless_core.blobs import BlobCapability, BlobRef, BlobStore, BlobUpload
from bugless_core.errors import BuglessError

if TYPE_CHECKING:
    from bugless_blob_s3._objects import Bucket

#: Bytes per chunk a reader yields.
READ_CHUNK_BYTES = 256 * 1024
#: Where unfinished large uploads live, under the prefix; never a hash directory.
UPLOADS_DIRECTORY = "uploads/"
_SHA256 = re.compile(r"[0-9a-f]{64}")


class S3BlobStore(BlobStore):
    """Blob content as objects in an S3-compatible bucket (``BUGLESS_BLOB_STORE=s3``)."""

    name = "s3"
    settings_type = S3BlobSettings

    def __init__(self, bucket: Bucket, settings: S3BlobSettings) -> None:
        """Use an open ``bucket``; :meth:`close` closes it."""
        self._bucket = bucket
        self._settings = settings

    @property
    def capabilities(self) -> frozenset[BlobCapability]:
        """Server-side encryption when ``BUGLESS_BLOB_S3_SSE`` asks for it."""
        if self._settings.sse:
            return frozenset({BlobCapability.SERVER_SIDE_ENCRYPTION})
        return frozenset()

    @classmethod
    async def connect(cls, settings: S3BlobSettings) -> Self:
        """Open a client and check that the bucket is there and answers.

        Raises:
            FailedPrecondition: the bucket does not exist or access is refused.
            Unavailable: the endpoint cannot be reached.
        """
        from bugless_blob_s3._objects import Bucket  # noqa: PLC0415 - aiobotocore on demand

        return cls(await Bucket.open(settings), settings)

    async def close(self) -> None:
        """Close the client and its connections."""
        await self._bucket.close()

    async def check_ready(self) -> bool:
        """Whether the bucket answers a HEAD now."""
        try:
            await self._bucket.check()
        except BuglessError:
            return False
        return True

    def key_of(self, sha256: str) -> str:
        """The object key of content ``sha256``."""
        return f"{self._settings.prefix}{sha256[:2]}/{sha256}"

    # ---- writing ----

    async def _put(self, upload: BlobUpload) -> None:
        pieces = upload.pieces(self._settings.part_bytes)
        try:
            held: list[bytes] = []
            while len(held) < 2 and (piece := await anext(pieces, None)) is not None:
                held.append(piece)
            del piece
            if len(held) < 2:
                await self._put_whole(upload.ref(), held[0] if held else b"")
                return
            await self._put_in_parts(upload, _handed_over(held, pieces))
        finally:
            await pieces.aclose()

    async def _put_whole(self, ref: BlobRef, data: bytes) -> None:
        """One PUT to the final key, unless the content is already there."""
        key = self.key_of(ref.sha256)
        if await self._bucket.size_of(key) is not None:
            return
        checksum = base64.b64encode(bytes.fromhex(ref.sha256)).decode("ascii")
        await self._bucket.put(key, data, checksum)

    async def _put_in_parts(self, upload: BlobUpload, parts: AsyncIterator[bytes]) -> None:
        """Multipart to a temporary key, then copy to the final key if it is new."""
        started = int(time.time())  # in the key: how old an abandoned one is (the sweep)
        temporary = f"{self._settings.prefix}{UPLOADS_DIRECTORY}{started}-{uuid.uuid4().hex}"
        await self._bucket.upload_parts(temporary, parts)
        try:
            ref = upload.ref()
            final = self.key_of(ref.sha256)
            if await self._bucket.size_of(final) is None:
                await self._bucket.copy(temporary, final, ref.size)
        finally:
            await self._bucket.delete_quietly(temporary)

    # ---- reading ----

    async def _size(self, sha256: str) -> int | None:
        return await self._bucket.size_of(self.key_of(sha256))

    def _read(self, ref: BlobRef, offset: int, length: int) -> AsyncGenerator[bytes, None]:
        missing = f"blob {ref.sha256}: it was deleted while being read"
        return self._bucket.read(self.key_of(ref.sha256), offset, length, READ_CHUNK_BYTES, missing)

    # ---- listing and sweeping ----

    async def _stored_before(self, cutoff: datetime) -> AsyncIterator[str]:
        """Content objects (``{prefix}xx/{sha256}``) last written before ``cutoff``."""
        prefix = self._settings.prefix
        async for key, modified in self._bucket.objects(prefix):
            name = key[len(prefix) :]
            if name.startswith(UPLOADS_DIRECTORY) or modified >= cutoff:
                continue
            directory, _, sha256 = name.partition("/")
            if _SHA256.fullmatch(sha256) and directory == sha256[:2]:
                yield sha256

    async def remove_abandoned(self, cutoff: datetime) -> int:
        """Abort multipart uploads and delete temporary objects of puts started before ``cutoff``.

        A put's age is read from its temporary key (it names the second the
        put started), not from the server's dates, which some S3-compatible
        servers do not keep for uploads; keys without one use those dates.
        """
        uploads = f"{self._settings.prefix}{UPLOADS_DIRECTORY}"
        stale = [
            (key, upload_id)
            async for key, upload_id, initiated in self._bucket.multipart_uploads(uploads)
            if _started(key, initiated) < cutoff
        ]
        for key, upload_id in stale:
            await self._bucket.abort_upload(key, upload_id)
        removed = len(stale)
        async for key, modified in self._bucket.objects(uploads):
            if _started(key, modified) < cutoff:
                await self._bucket.delete(key)
                removed += 1
        return removed

    # ---- deleting ----

    async def _delete(self, sha256: str) -> bool:
        key = self.key_of(sha256)
        if await self._bucket.size_of(key) is None:
            return False
        await self._bucket.delete(key)
        return True


async def _handed_over(held: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The pieces in ``held`` (emptying it, so no frame keeps them alive), then ``rest``."""
    while held:
        yield held.pop(0)
    async for piece in rest:
        yield piece


def _started(key: str, server_date: datetime) -> datetime:
    """When the put of temporary ``key`` started: the second its name carries, else the server's."""
    stamp = key.rsplit("/", 1)[-1].split("-", 1)[0]
    if "-" in key.rsplit("/", 1)[-1] and stamp.isdigit():
        return datetime.fromtimestamp(int(stamp), UTC)
    return server_date
