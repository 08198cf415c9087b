"""Round trips: what goes in comes out, byte for byte, whatever the chunking."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest

from bugless_core.blobs import EMPTY_SHA256, BlobRef, BlobStore
from bugless_testing.blob_contracts._support import (
    BlobContractBase,
    chunked,
    random_content,
    read_all,
    ref_of,
)


class RoundTripContract(BlobContractBase):
    """Empty, small and multi-piece content round-trips with its SHA-256 and size."""

    async def test_empty_content_round_trips_as_the_empty_hash(self, store: BlobStore) -> None:
        ref = await store.put(chunked(b"", 1))
        assert ref == BlobRef(EMPTY_SHA256, 0)
        assert await store.exists(EMPTY_SHA256)
        assert await store.stat(EMPTY_SHA256) == ref
        assert await read_all(store, EMPTY_SHA256) == b""

    async def test_small_content_round_trips(self, store: BlobStore) -> None:
        content = random_content(1000)
        ref = await store.put(chunked(content, 1000))
        assert ref == ref_of(content)
        assert await store.exists(ref.sha256)
        assert await store.stat(ref.sha256) == ref
        assert await read_all(store, ref.sha256) == content

    async def test_content_of_several_pieces_round_trips(
        self, store: BlobStore, piece: int
    ) -> None:
        content = random_content(piece * 2 + piece // 2 + 7)
        ref = await store.put(chunked(content, 64 * 1024))
        assert ref == ref_of(content)
        reader = await store.open(ref.sha256)
        assert (reader.ref, reader.offset, reader.length) == (ref, 0, len(content))
        digest = hashlib.sha256()
        received = 0
        async with reader:
            async for chunk in reader:
                digest.update(chunk)
                received += len(chunk)
        assert (digest.hexdigest(), received) == (ref.sha256, ref.size)

    async def test_content_exactly_one_piece_round_trips(
        self, store: BlobStore, piece: int
    ) -> None:
        content = random_content(piece)
        ref = await store.put(chunked(content, piece))
        assert ref == ref_of(content)
        assert await read_all(store, ref.sha256) == content

    @pytest.mark.parametrize("chunk_size", [1, 4093, 1 << 20])
    async def test_how_the_writer_chunks_content_does_not_matter(
        self, store: BlobStore, chunk_size: int
    ) -> None:
        content = random_content(20_000 if chunk_size == 1 else 300_000)
        ref = await store.put(chunked(content, chunk_size))
        assert ref == ref_of(content)
        assert await read_all(store, ref.sha256) == content

    async def test_empty_chunks_in_the_stream_are_ignored(self, store: BlobStore) -> None:
        content = random_content(5000)

        async def with_gaps() -> AsyncIterator[bytes]:
            yield b""
            yield content[:10]
            yield b""
            yield b""
            yield content[10:]
            yield b""

        ref = await store.put(with_gaps())
        assert ref == ref_of(content)
        assert await read_all(store, ref.sha256) == content

    async def test_a_reader_closed_early_leaves_the_blob_readable(
        self, store: BlobStore, piece: int
    ) -> None:
        content = random_content(piece * 3)
        ref = await store.put(chunked(content, piece))
        async with await store.open(ref.sha256) as reader:
            first = await anext(reader)
        assert content.startswith(first)
        assert await read_all(store, ref.sha256) == content
