"""The s3 blob store of bugless: attachment content in an S3-compatible object store."""

from __future__ import annotations

from bugless_blob_s3.__about__ import __version__
from bugless_blob_s3.settings import S3BlobSettings
from bugless_blob_s3.store import S3BlobStore

__all__ = ["S3BlobSettings", "S3BlobStore", "__version__"]
