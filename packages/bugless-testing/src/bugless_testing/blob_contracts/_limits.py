"""Failed puts: the size limit and broken streams leave nothing behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from bugless_core.blobs import BlobStore
from bugless_core.errors import InvalidArgument, ResourceExhausted, SizeLimitExceeded
from bugless_testing.blob_contracts._support import (
    BlobContractBase,
    Footprint,
    broken_stream,
    chunked,
    random_content,
    read_all,
    ref_of,
)


class _ConnectionDropped(Exception):
    """Stands for whatever the transport raises when an upload breaks off."""


class LimitContract(BlobContractBase):
    """``max_size`` is enforced mid-stream; a failed put stores nothing and leaves no residue."""

    async def test_content_over_the_limit_is_refused_midway_and_leaves_nothing(
        self, store: BlobStore, piece: int, footprint: Callable[[], Awaitable[Footprint]]
    ) -> None:
        content = random_content(piece * 3 + 1000)
        limit = piece * 2 + piece // 2
        before = await footprint()
        with pytest.raises(SizeLimitExceeded) as info:
            # Chunks smaller than a piece: the store has written two pieces
            # by the time the limit trips, and must take them back.
            await store.put(chunked(content, max(1, piece // 4)), max_size=limit)
        error = info.value
        assert isinstance(error, ResourceExhausted)
        assert error.limit_bytes == limit
        assert str(limit) in error.message
        assert error.http_status == 413
        assert await footprint() == before
        assert not await store.exists(ref_of(content).sha256)

    async def test_content_of_exactly_the_limit_is_stored(self, store: BlobStore) -> None:
        content = random_content(10_000)
        ref = await store.put(chunked(content, 999), max_size=10_000)
        assert ref == ref_of(content)
        assert await read_all(store, ref.sha256) == content

    async def test_a_limit_of_zero_admits_only_empty_content(
        self, store: BlobStore, footprint: Callable[[], Awaitable[Footprint]]
    ) -> None:
        before = await footprint()
        with pytest.raises(SizeLimitExceeded):
            await store.put(chunked(b"x", 1), max_size=0)
        assert await footprint() == before
        assert (await store.put(chunked(b"", 1), max_size=0)).size == 0

    async def test_a_negative_limit_is_invalid(self, store: BlobStore) -> None:
        with pytest.raises(InvalidArgument, match="max_size"):
            await store.put(chunked(b"abc", 1), max_size=-1)

    async def test_a_stream_that_breaks_off_stores_nothing(
        self, store: BlobStore, piece: int, footprint: Callable[[], Awaitable[Footprint]]
    ) -> None:
        content = random_content(piece * 2 + 3)
        before = await footprint()
        with pytest.raises(_ConnectionDropped):
            await store.put(broken_stream(content, 65_536, _ConnectionDropped("reset by peer")))
        assert await footprint() == before
        assert not await store.exists(ref_of(content).sha256)

    async def test_a_stream_that_breaks_off_before_a_full_piece_stores_nothing(
        self, store: BlobStore, footprint: Callable[[], Awaitable[Footprint]]
    ) -> None:
        content = random_content(100)
        before = await footprint()
        with pytest.raises(_ConnectionDropped):
            await store.put(broken_stream(content, 10, _ConnectionDropped("reset by peer")))
        assert await footprint() == before

    async def test_a_cancelled_put_leaves_nothing(
        self, store: BlobStore, piece: int, footprint: Callable[[], Awaitable[Footprint]]
    ) -> None:
        before = await footprint()
        stalled = asyncio.Event()

        async def stalls_after_three_pieces() -> AsyncIterator[bytes]:
            async for chunk in chunked(random_content(piece * 3), max(1, piece // 2)):
                yield chunk
            stalled.set()
            await asyncio.Event().wait()  # the client went quiet
            yield b"never"

        put = asyncio.create_task(store.put(stalls_after_three_pieces()))
        await asyncio.wait_for(stalled.wait(), 60)
        await asyncio.sleep(0.2)  # let the store write what it has
        put.cancel()
        with pytest.raises(asyncio.CancelledError):
            await put
        assert await footprint() == before

    async def test_a_failed_put_of_stored_content_keeps_the_stored_copy(
        self, store: BlobStore, piece: int
    ) -> None:
        content = random_content(piece + 17)
        ref = await store.put(chunked(content, 65_536))
        with pytest.raises(SizeLimitExceeded):
            await store.put(chunked(content, 65_536), max_size=piece)
        with pytest.raises(_ConnectionDropped):
            await store.put(broken_stream(content, 65_536, _ConnectionDropped("gone")))
        assert await read_all(store, ref.sha256) == content
