"""The pluggy hookimpls of bugless-blob-s3: registration only."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bugless_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from bugless_core.registry import BlobStoreRegistrar


@hookimpl
def bugless_register_blob_stores(register: BlobStoreRegistrar) -> None:
    """Offer the store as ``BUGLESS_BLOB_STORE=s3``; imported when a Model asks for it."""
    register("s3", "bugless_blob_s3.store:S3BlobStore")
