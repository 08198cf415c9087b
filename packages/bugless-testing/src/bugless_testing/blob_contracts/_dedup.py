"""Deduplication: content is stored once per SHA-256, however often it is put."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bugless_core.blobs import BlobStore
from bugless_testing.blob_contracts._support import (
    BlobContractBase,
    Footprint,
    chunked,
    random_content,
    read_all,
    ref_of,
)


class DedupContract(BlobContractBase):
    """Putting the same content again costs nothing and returns the same reference."""

    async def test_same_content_twice_is_stored_once(
        self, store: BlobStore, piece: int, footprint: Callable[[], Awaitable[Footprint]]
    ) -> None:
        content = random_content(piece * 2 + 11)
        before = await footprint()
        first = await store.put(chunked(content, 65_536))
        after_first = await footprint()
        second = await store.put(chunked(content, 65_536))
        after_second = await footprint()
        assert first == second == ref_of(content)
        assert after_first.stored_bytes - before.stored_bytes == len(content)
        assert after_first.blobs - before.blobs == 1
        assert after_second == after_first
        assert after_second.pending == 0
        assert await read_all(store, first.sha256) == content

    async def test_same_content_chunked_differently_is_the_same_blob(
        self, store: BlobStore, footprint: Callable[[], Awaitable[Footprint]]
    ) -> None:
        content = random_content(50_000)
        first = await store.put(chunked(content, 50_000))
        after_first = await footprint()
        second = await store.put(chunked(content, 333))
        assert second == first
        assert await footprint() == after_first

    async def test_different_content_is_stored_apart(
        self, store: BlobStore, footprint: Callable[[], Awaitable[Footprint]]
    ) -> None:
        one, two = random_content(3000), random_content(3000)
        before = await footprint()
        ref_one = await store.put(chunked(one, 1000))
        ref_two = await store.put(chunked(two, 1000))
        after = await footprint()
        assert ref_one.sha256 != ref_two.sha256
        assert after.stored_bytes - before.stored_bytes == 6000
        assert after.blobs - before.blobs == 2
        assert await read_all(store, ref_one.sha256) == one
        assert await read_all(store, ref_two.sha256) == two
