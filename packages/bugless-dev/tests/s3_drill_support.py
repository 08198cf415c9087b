"""The S3 side of the backup drills: the attachments' bucket as docs/backup.md configures it.

``test_backup_restore_s3.py`` (the guide's backup and restore of a bucket)
and ``test_missing_content_s3.py`` (an object missing from it) run a tracker
whose attachments are in a bucket of a real moto server, made and reached
here the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from aiobotocore.session import get_session

from bugless_testing.s3 import ACCESS_KEY, REGION, SECRET_KEY, S3TestServer

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import LifecycleRuleTypeDef

BUCKET = "bugless-attachments"
#: The store's default key prefix (``BUGLESS_BLOB_S3_PREFIX``), as the guide's commands use it.
PREFIX = "bugless/blobs/"
#: The smallest part the store allows: a file above it is a multipart upload and a copy.
PART_BYTES = 5 * 1024 * 1024
#: The lifecycle rule of the guide: noncurrent versions expire after the backups' retention.
RETENTION_RULE: LifecycleRuleTypeDef = {
    "ID": "bugless-noncurrent-versions",
    "Status": "Enabled",
    "Filter": {"Prefix": PREFIX},
    "NoncurrentVersionExpiration": {"NoncurrentDays": 35},
}


def s3_environment(server: S3TestServer, directory: Path) -> dict[str, str]:
    """What every service of the deployment gets to keep attachments in :data:`BUCKET`."""
    absent = str(directory / "no-aws-config")
    return {
        **server.environ(),
        "AWS_CONFIG_FILE": absent,
        "AWS_SHARED_CREDENTIALS_FILE": absent,
        "BUGLESS_BLOB_STORE": "s3",
        "BUGLESS_BLOB_S3_BUCKET": BUCKET,
        "BUGLESS_BLOB_S3_ENDPOINT_URL": server.endpoint_url,
        "BUGLESS_BLOB_S3_REGION": REGION,
        "BUGLESS_BLOB_S3_ADDRESSING_STYLE": "path",
        "BUGLESS_BLOB_S3_PART_BYTES": str(PART_BYTES),
    }


@asynccontextmanager
async def s3_client(server: S3TestServer) -> AsyncIterator[S3Client]:
    """An operator's client of the S3 server (the ``aws`` command's, through the SDK)."""
    async with get_session().create_client(
        "s3",
        endpoint_url=server.endpoint_url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    ) as client:
        yield client


async def make_bucket(s3: S3Client, bucket: str) -> None:
    """A bucket as the guide configures the attachments' one: versioning and its lifecycle rule."""
    await s3.create_bucket(Bucket=bucket)
    await s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    await s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={"Rules": [RETENTION_RULE]},
    )
