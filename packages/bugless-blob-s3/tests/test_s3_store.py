"""The s3 store beyond the shared contracts: keys, encryption, copies, setup, cancellation."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from s3_support import StoreOpener, footprint_of, settings_on

from bugless_blob_s3 import S3BlobSettings, S3BlobStore
from bugless_blob_s3.settings import MIB, MIN_PART_BYTES
from bugless_core.blobs import BlobCapability, connect_blob_store
from bugless_core.errors import FailedPrecondition, InvalidArgument, Unavailable
from bugless_core.plugins import load_plugins
from bugless_testing.blob_contracts import Footprint, chunked, random_content, read_all
from bugless_testing.ports import refused_port
from bugless_testing.s3 import REGION, S3TestServer

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client


async def test_the_installed_plugin_offers_the_store_as_s3(
    s3_server: S3TestServer, bucket: str
) -> None:
    plugins = load_plugins()
    assert plugins.blob_stores.get("s3") is S3BlobStore
    store = await connect_blob_store(
        plugins.blob_stores,
        {
            "BUGLESS_BLOB_STORE": "s3",
            "BUGLESS_BLOB_S3_BUCKET": bucket,
            "BUGLESS_BLOB_S3_PREFIX": "from-env/",
            "BUGLESS_BLOB_S3_ENDPOINT_URL": s3_server.endpoint_url,
            "BUGLESS_BLOB_S3_REGION": REGION,
            "BUGLESS_BLOB_S3_ADDRESSING_STYLE": "path",
            "BUGLESS_BLOB_S3_SSE": "AES256",
            "BUGLESS_BLOB_S3_PART_BYTES": str(6 * MIB),
        },
    )
    try:
        assert isinstance(store, S3BlobStore)
        assert store.capabilities == {BlobCapability.SERVER_SIDE_ENCRYPTION}
        assert await store.check_ready()
    finally:
        await store.close()


async def test_content_is_one_object_under_the_prefix_and_two_hex_digits(
    open_store: StoreOpener, s3_client: S3Client, bucket: str
) -> None:
    store = await open_store(prefix="layout/")
    content = random_content(1000)
    ref = await store.put(chunked(content, 100))
    listing = await s3_client.list_objects_v2(Bucket=bucket, Prefix="layout/")
    keys = [item["Key"] for item in listing.get("Contents", [])]
    assert keys == [f"layout/{ref.sha256[:2]}/{ref.sha256}"]
    got = await s3_client.get_object(Bucket=bucket, Key=keys[0])
    async with got["Body"] as body:
        assert await body.read() == content


@pytest.mark.parametrize("size", [1000, 2 * MIN_PART_BYTES + 10], ids=["one-put", "multipart"])
@pytest.mark.parametrize(
    "encryption",
    [
        {"sse": "AES256"},
        {"sse": "aws:kms", "kms_key_id": "alias/bugless-attachments"},
    ],
    ids=["aes256", "kms"],
)
async def test_every_stored_object_is_encrypted_as_configured(
    open_store: StoreOpener, s3_client: S3Client, bucket: str, size: int, encryption: dict[str, str]
) -> None:
    store = await open_store(part_bytes=MIN_PART_BYTES, **encryption)
    assert BlobCapability.SERVER_SIDE_ENCRYPTION in store.capabilities
    ref = await store.put(chunked(random_content(size), 1 << 20))
    head = await s3_client.head_object(Bucket=bucket, Key=store.key_of(ref.sha256))
    assert head.get("ServerSideEncryption") == encryption["sse"]
    assert head.get("SSEKMSKeyId") == encryption.get("kms_key_id")


async def test_without_sse_no_encryption_is_requested_or_declared(
    open_store: StoreOpener, s3_client: S3Client, bucket: str
) -> None:
    store = await open_store()
    assert store.capabilities == frozenset()
    ref = await store.put(chunked(random_content(100), 100))
    head = await s3_client.head_object(Bucket=bucket, Key=store.key_of(ref.sha256))
    assert head.get("SSEKMSKeyId") is None
    assert head.get("ServerSideEncryption") in (None, "AES256")  # the bucket's default


async def test_large_content_is_moved_by_a_single_copy_when_it_fits_one(
    open_store: StoreOpener, s3_client: S3Client, bucket: str
) -> None:
    store = await open_store(part_bytes=MIN_PART_BYTES)  # copies up to 5 GiB in one request
    content = random_content(2 * MIN_PART_BYTES + 123)
    ref = await store.put(chunked(content, 1 << 20))
    assert await read_all(store, ref.sha256) == content
    prefix = store.key_of(ref.sha256).split("/", 1)[0] + "/"
    assert await footprint_of(s3_client, bucket, prefix) == Footprint(len(content), 1, 0)


async def test_a_cancelled_multipart_put_aborts_its_upload(
    open_store: StoreOpener, s3_client: S3Client, bucket: str
) -> None:
    store = await open_store(part_bytes=MIN_PART_BYTES)
    prefix = store.key_of("0" * 64).split("/", 1)[0] + "/"
    three_parts_sent = asyncio.Event()

    async def stalls_after_three_parts() -> AsyncIterator[bytes]:
        async for chunk in chunked(random_content(3 * MIN_PART_BYTES), 1 << 20):
            yield chunk
        three_parts_sent.set()
        await asyncio.Event().wait()  # the client went quiet
        yield b"never"

    put = asyncio.create_task(store.put(stalls_after_three_parts()))
    await asyncio.wait_for(three_parts_sent.wait(), 30)
    uploads = await s3_client.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
    assert len(uploads.get("Uploads", [])) == 1
    put.cancel()
    with pytest.raises(asyncio.CancelledError):
        await put
    assert await footprint_of(s3_client, bucket, prefix) == Footprint(0, 0, 0)


async def test_a_missing_bucket_is_refused_at_connect_naming_it(
    s3_server: S3TestServer, bucket: str
) -> None:
    with pytest.raises(FailedPrecondition, match="no-such-bucket"):
        await S3BlobStore.connect(settings_on(s3_server, bucket, bucket="no-such-bucket"))


async def test_an_unreachable_endpoint_is_unavailable(s3_server: S3TestServer, bucket: str) -> None:
    with refused_port() as port:
        endpoint = f"http://127.0.0.1:{port}"
        settings = settings_on(s3_server, bucket, endpoint_url=endpoint)
        with pytest.raises(Unavailable, match="unreachable"):
            await S3BlobStore.connect(settings)


async def test_check_ready_turns_false_when_the_bucket_goes(
    open_store: StoreOpener, s3_client: S3Client
) -> None:
    await s3_client.create_bucket(Bucket="short-lived")
    store = await open_store(bucket="short-lived")
    assert await store.check_ready()
    await s3_client.delete_bucket(Bucket="short-lived")
    assert not await store.check_ready()


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"bucket": ""}, "BUGLESS_BLOB_S3_BUCKET"),
        ({"prefix": "no-slash"}, "BUGLESS_BLOB_S3_PREFIX"),
        ({"prefix": "/abs/"}, "BUGLESS_BLOB_S3_PREFIX"),
        ({"addressing_style": "dns"}, "BUGLESS_BLOB_S3_ADDRESSING_STYLE"),
        ({"sse": "aes256"}, "BUGLESS_BLOB_S3_SSE"),
        ({"kms_key_id": "k"}, "BUGLESS_BLOB_S3_KMS_KEY_ID"),
        ({"part_bytes": MIB}, "BUGLESS_BLOB_S3_PART_BYTES"),
        ({"copy_part_bytes": 6 * 1024 * MIB}, "BUGLESS_BLOB_S3_COPY_PART_BYTES"),
    ],
)
def test_bad_settings_are_refused_naming_the_variable(
    overrides: dict[str, object], variable: str
) -> None:
    values: dict[str, Any] = {"bucket": "b", **overrides}
    with pytest.raises(InvalidArgument, match=variable):
        S3BlobSettings(**values)


async def test_the_sweep_removes_what_a_killed_put_left_and_finds_old_content(
    open_store: StoreOpener, s3_client: S3Client, bucket: str
) -> None:
    store = await open_store(part_bytes=MIN_PART_BYTES)
    kept = await store.put(chunked(b"stored and listed", 4))
    prefix = store.key_of(kept.sha256).split("/", 1)[0] + "/"
    # What a process killed mid-put leaves (its finally never ran): an open
    # multipart upload with a part, and a temporary object not yet deleted,
    # under keys named as the store names them (the second the put started).
    dead = f"{prefix}uploads/{int(time.time())}-{uuid.uuid4().hex}"
    started = await s3_client.create_multipart_upload(Bucket=bucket, Key=dead)
    await s3_client.upload_part(
        Bucket=bucket,
        Key=dead,
        UploadId=started["UploadId"],
        PartNumber=1,
        Body=random_content(MIN_PART_BYTES),
    )
    copied = f"{prefix}uploads/{int(time.time())}-{uuid.uuid4().hex}"
    await s3_client.put_object(Bucket=bucket, Key=copied, Body=b"x" * 100)
    assert await footprint_of(s3_client, bucket, prefix) == Footprint(kept.size, 1, 2)
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    assert await store.remove_abandoned(long_ago) == 0  # too young: maybe still running
    assert [sha async for sha in store.stored_before(long_ago)] == []
    later = datetime.now(UTC) + timedelta(seconds=5)
    assert await store.remove_abandoned(later) == 2
    assert await footprint_of(s3_client, bucket, prefix) == Footprint(kept.size, 1, 0)
    assert [sha async for sha in store.stored_before(later)] == [kept.sha256]
