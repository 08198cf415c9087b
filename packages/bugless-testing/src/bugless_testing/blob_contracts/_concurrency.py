"""Concurrency: simultaneous puts of one content store it once; reads run side by side."""

from __future__ import annotations

import asyncio
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


class ConcurrencyContract(BlobContractBase):
    """Puts racing on one hash all succeed with one stored copy; nothing is left pending."""

    async def test_concurrent_puts_of_the_same_content_store_it_once(
        self, store: BlobStore, piece: int, footprint: Callable[[], Awaitable[Footprint]]
    ) -> None:
        content = random_content(piece * 2 + 99)
        before = await footprint()
        refs = await asyncio.gather(*(store.put(chunked(content, 32_768)) for _ in range(4)))
        after = await footprint()
        assert set(refs) == {ref_of(content)}
        assert after.stored_bytes - before.stored_bytes == len(content)
        assert after.blobs - before.blobs == 1
        assert after.pending == 0
        assert await read_all(store, refs[0].sha256) == content

    async def test_concurrent_puts_of_different_content_are_all_stored(
        self, store: BlobStore, piece: int, footprint: Callable[[], Awaitable[Footprint]]
    ) -> None:
        contents = [random_content(piece + n) for n in range(4)]
        before = await footprint()
        refs = await asyncio.gather(*(store.put(chunked(c, 40_000)) for c in contents))
        after = await footprint()
        assert refs == [ref_of(c) for c in contents]
        assert after.blobs - before.blobs == 4
        assert after.stored_bytes - before.stored_bytes == sum(map(len, contents))
        assert after.pending == 0
        for content, ref in zip(contents, refs, strict=True):
            assert await read_all(store, ref.sha256) == content

    async def test_concurrent_reads_of_one_blob_each_get_all_of_it(
        self, store: BlobStore, piece: int
    ) -> None:
        content = random_content(piece * 2 + 5)
        ref = await store.put(chunked(content, 65_536))
        results = await asyncio.gather(*(read_all(store, ref.sha256) for _ in range(4)))
        assert results == [content] * 4
