"""Deletion: the content goes, others stay, and the same content can come back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from bugless_core.blobs import BlobStore
from bugless_core.errors import NotFound
from bugless_testing.blob_contracts._support import (
    BlobContractBase,
    Footprint,
    chunked,
    random_content,
    read_all,
)


class DeleteContract(BlobContractBase):
    """``delete`` removes exactly one blob's content and all of its storage."""

    async def test_delete_removes_the_content_and_its_storage(
        self, store: BlobStore, piece: int, footprint: Callable[[], Awaitable[Footprint]]
    ) -> None:
        content = random_content(piece * 2 + 1)
        before = await footprint()
        ref = await store.put(chunked(content, 65_536))
        assert await store.delete(ref.sha256) is True
        assert not await store.exists(ref.sha256)
        with pytest.raises(NotFound):
            await store.open(ref.sha256)
        assert await footprint() == before

    async def test_deleting_twice_reports_nothing_the_second_time(self, store: BlobStore) -> None:
        ref = await store.put(chunked(random_content(10), 10))
        assert await store.delete(ref.sha256) is True
        assert await store.delete(ref.sha256) is False

    async def test_delete_leaves_other_blobs_alone(self, store: BlobStore, piece: int) -> None:
        keep, drop = random_content(piece + 1), random_content(piece + 1)
        kept = await store.put(chunked(keep, 65_536))
        dropped = await store.put(chunked(drop, 65_536))
        await store.delete(dropped.sha256)
        assert await read_all(store, kept.sha256) == keep

    async def test_deleted_content_can_be_stored_again(self, store: BlobStore, piece: int) -> None:
        content = random_content(piece + 3)
        ref = await store.put(chunked(content, 65_536))
        await store.delete(ref.sha256)
        assert await store.put(chunked(content, 65_536)) == ref
        assert await read_all(store, ref.sha256) == content

    async def test_the_empty_blob_can_be_deleted_and_stored_again(self, store: BlobStore) -> None:
        ref = await store.put(chunked(b"", 1))
        await store.delete(ref.sha256)
        assert not await store.exists(ref.sha256)
        assert await store.put(chunked(b"", 1)) == ref
        assert await store.exists(ref.sha256)
