"""One bucket through an aiobotocore client: the few object operations the store needs.

Kept apart from :mod:`bugless_blob_s3.store` so that registering the store
(which every bugless process does when it loads its plugins) imports neither
aiobotocore nor aiohttp; they are imported when a store connects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import datetime
from typing import TYPE_CHECKING, Self

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from bugless_blob_s3 import _multipart
from bugless_blob_s3._errors import is_absent, translated_errors
from bugless_blob_s3.settings import S3BlobSettings
from bugless_core.errors import FailedPrecondition, NotFound

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

_log = logging.getLogger(__name__)


class Bucket:
    """The store's bucket: HEAD, PUT, ranged GET, DELETE, multipart upload and copy.

    Every method raises :mod:`bugless_core.errors` only.
    """

    def __init__(
        self, client: S3Client, settings: S3BlobSettings, stack: contextlib.AsyncExitStack
    ) -> None:
        self._client = client
        self._settings = settings
        self._name = settings.bucket
        self._stack = stack
        self._encryption = settings.encryption()

    @classmethod
    async def open(cls, settings: S3BlobSettings) -> Self:
        """A client on the settings' endpoint, after checking that the bucket answers."""
        config = AioConfig(
            s3={"addressing_style": settings.addressing_style},
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=10,
            read_timeout=60,
        )
        stack = contextlib.AsyncExitStack()
        client = await stack.enter_async_context(
            get_session().create_client(
                "s3",
                endpoint_url=settings.endpoint_url or None,
                region_name=settings.region or None,
                config=config,
            )
        )
        bucket = cls(client, settings, stack)
        try:
            await bucket.check()
        except BaseException:
            await stack.aclose()
            raise
        return bucket

    async def close(self) -> None:
        """Close the client and its connections."""
        await self._stack.aclose()

    async def check(self) -> None:
        """HEAD the bucket.

        Raises:
            FailedPrecondition: it does not exist, or access is refused.
            Unavailable: the endpoint does not answer.
        """
        with translated_errors(self._name):
            try:
                await self._client.head_bucket(Bucket=self._name)
            except ClientError as exc:
                if is_absent(exc):  # HEAD has no body: "404" is all S3 says
                    msg = (
                        f"the bucket {self._name!r} does not exist at "
                        f"{self._settings.endpoint_url or 'AWS'}; create it or fix "
                        "BUGLESS_BLOB_S3_BUCKET"
                    )
                    raise FailedPrecondition(msg) from exc
                raise

    async def size_of(self, key: str) -> int | None:
        """Size of the object at ``key``, None if there is none."""
        with translated_errors(self._name):
            try:
                head = await self._client.head_object(Bucket=self._name, Key=key)
            except ClientError as exc:
                if is_absent(exc):
                    return None
                raise
        return head["ContentLength"]

    async def put(self, key: str, data: bytes, sha256_base64: str) -> None:
        """One PUT, which the store verifies against the content's SHA-256."""
        with translated_errors(self._name):
            await self._client.put_object(
                Bucket=self._name,
                Key=key,
                Body=data,
                ChecksumSHA256=sha256_base64,
                **self._encryption,
            )

    async def upload_parts(self, key: str, parts: AsyncIterator[bytes]) -> None:
        """A multipart upload of ``parts`` to ``key``, aborted if anything fails."""
        await _multipart.upload_parts(self._client, self._name, key, parts, self._encryption)

    async def copy(self, source: str, target: str, size: int) -> None:
        """A server-side copy, in parts above ``copy_part_bytes``."""
        await _multipart.copy_object(
            self._client,
            self._name,
            source=source,
            target=target,
            size=size,
            part_bytes=self._settings.copy_part_bytes,
            encryption=self._encryption,
        )

    async def read(
        self, key: str, offset: int, length: int, chunk_bytes: int, missing: str
    ) -> AsyncGenerator[bytes, None]:
        """Yield ``length`` bytes from ``offset``; NotFound(``missing``) if the key is gone."""
        with translated_errors(self._name):
            try:
                got = await self._client.get_object(
                    Bucket=self._name, Key=key, Range=f"bytes={offset}-{offset + length - 1}"
                )
            except ClientError as exc:
                if is_absent(exc):
                    raise NotFound(missing) from exc
                raise
        body = got["Body"]
        try:
            with translated_errors(self._name):
                async for chunk in body.iter_chunks(chunk_bytes):
                    yield chunk
        finally:
            body.close()

    async def delete(self, key: str) -> None:
        """Delete ``key`` (nothing happens if it is not there)."""
        with translated_errors(self._name):
            await self._client.delete_object(Bucket=self._name, Key=key)

    async def delete_quietly(self, key: str) -> None:
        """Delete ``key`` even if the caller is cancelled; log a failure instead of raising."""
        try:
            await asyncio.shield(self._client.delete_object(Bucket=self._name, Key=key))
        except Exception:
            _log.warning("could not delete the temporary object %s", key, exc_info=True)

    async def objects(self, prefix: str) -> AsyncIterator[tuple[str, datetime]]:
        """``(key, last modified)`` of every object under ``prefix``, a page at a time."""
        paginator = self._client.get_paginator("list_objects_v2")
        with translated_errors(self._name):
            async for page in paginator.paginate(Bucket=self._name, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield item["Key"], item["LastModified"]

    async def multipart_uploads(self, prefix: str) -> AsyncIterator[tuple[str, str, datetime]]:
        """``(key, upload id, initiated)`` of every open multipart upload under ``prefix``."""
        paginator = self._client.get_paginator("list_multipart_uploads")
        with translated_errors(self._name):
            async for page in paginator.paginate(Bucket=self._name, Prefix=prefix):
                for item in page.get("Uploads", []):
                    yield item["Key"], item["UploadId"], item["Initiated"]

    async def abort_upload(self, key: str, upload_id: str) -> None:
        """Abort one multipart upload (its parts are freed)."""
        with translated_errors(self._name):
            await self._client.abort_multipart_upload(
                Bucket=self._name, Key=key, UploadId=upload_id
            )
