"""What the S3 store's tests share besides fixtures: settings on a fresh prefix, footprints.

Kept out of ``conftest.py`` so that test modules import it by a name no other
test tree uses: pytest keeps one module named ``conftest``, so ``from conftest
import ...`` breaks as soon as two test trees run in one pytest.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Protocol

from bugless_blob_s3 import S3BlobSettings, S3BlobStore
from bugless_testing.blob_contracts import Footprint
from bugless_testing.s3 import REGION, S3TestServer

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client


class StoreOpener(Protocol):
    """The ``open_store`` fixture: connect a store on a fresh prefix, with overrides."""

    async def __call__(self, **overrides: Any) -> S3BlobStore: ...


def settings_on(server: S3TestServer, bucket: str, /, **overrides: Any) -> S3BlobSettings:
    """Settings on ``bucket`` of ``server`` under a prefix no other test uses."""
    values: dict[str, Any] = {
        "bucket": bucket,
        "prefix": f"t-{uuid.uuid4().hex[:12]}/",
        "endpoint_url": server.endpoint_url,
        "region": REGION,
        "addressing_style": "path",
    }
    values.update(overrides)
    return S3BlobSettings(**values)


async def footprint_of(client: S3Client, bucket: str, prefix: str) -> Footprint:
    """What is under ``prefix``, from listings: blobs, temporary objects, open uploads."""
    stored = blobs = pending = 0
    paginator = client.get_paginator("list_objects_v2")
    async for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if item["Key"].startswith(f"{prefix}uploads/"):
                pending += 1
            else:
                stored += item["Size"]
                blobs += 1
    uploads = await client.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
    pending += len(uploads.get("Uploads", []))
    return Footprint(stored_bytes=stored, blobs=blobs, pending=pending)
