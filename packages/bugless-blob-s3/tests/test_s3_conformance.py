"""The blob store conformance suite on the s3 store, against a real S3-compatible server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
from s3_support import footprint_of, settings_on

from bugless_blob_s3 import S3BlobStore
from bugless_blob_s3.settings import MIN_PART_BYTES
from bugless_testing.blob_contracts import (
    ConcurrencyContract,
    DedupContract,
    DeleteContract,
    Footprint,
    LimitContract,
    MissingBlobContract,
    RangeContract,
    RoundTripContract,
    StoreUnderTest,
)
from bugless_testing.s3 import S3TestServer

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client


@pytest.fixture(scope="module", params=["plain", "aws:kms"])
async def blob_store_under_test(
    s3_server: S3TestServer, s3_client: S3Client, bucket: str, request: pytest.FixtureRequest
) -> AsyncIterator[StoreUnderTest]:
    """The store with S3's smallest parts, so multi-part content stays small.

    Copies are multipart from one part on, so large puts go through the
    multipart copy; the second run encrypts every write with SSE-KMS.
    """
    encryption = {} if request.param == "plain" else {"sse": "aws:kms", "kms_key_id": "alias/b"}
    settings = settings_on(
        s3_server, bucket, part_bytes=MIN_PART_BYTES, copy_part_bytes=MIN_PART_BYTES, **encryption
    )
    store = await S3BlobStore.connect(settings)

    async def footprint() -> Footprint:
        return await footprint_of(s3_client, bucket, settings.prefix)

    try:
        yield StoreUnderTest(store=store, footprint=footprint, piece_size=MIN_PART_BYTES)
    finally:
        await store.close()


class TestRoundTrip(RoundTripContract): ...


class TestDedup(DedupContract): ...


class TestRanges(RangeContract): ...


class TestMissing(MissingBlobContract): ...


class TestLimits(LimitContract): ...


class TestConcurrency(ConcurrencyContract): ...


class TestDelete(DeleteContract): ...
