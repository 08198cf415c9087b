"""The s3 blob store of bugless: attachment content in an S3-compatible object store.

The names below are imported on first use (PEP 562): every bugless process
loads each installed package's plugin, which imports this package, and only
the Model storing attachments in S3 should pay for importing the object store client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bugless_blob_s3.__about__ import __version__
from bugless_core.lazy import lazy_attribute

if TYPE_CHECKING:
    from bugless_blob_s3.settings import S3BlobSettings
    from bugless_blob_s3.store import S3BlobStore

#: Public name -> the module defining it.
_LAZY = {
    "S3BlobSettings": "bugless_blob_s3.settings",
    "S3BlobStore": "bugless_blob_s3.store",
}

__all__ = [
    "S3BlobSettings",
    "S3BlobStore",
    "__version__",
]


def __getattr__(name: str) -> Any:
    """Import ``name``'s module on first use (:mod:`bugless_core.lazy`)."""
    return lazy_attribute(__name__, _LAZY, name)
