"""Byte ranges: any window of a blob, across piece boundaries, cut like HTTP ranges."""

from __future__ import annotations

import pytest

from bugless_core.blobs import BlobStore
from bugless_core.errors import InvalidArgument
from bugless_testing.blob_contracts._support import (
    BlobContractBase,
    chunked,
    random_content,
    read_all,
)


class RangeContract(BlobContractBase):
    """``open(offset=, length=)`` yields exactly the bytes asked for."""

    async def test_ranges_within_and_across_pieces_read_exactly_those_bytes(
        self, store: BlobStore, piece: int
    ) -> None:
        content = random_content(piece * 3 + 100)
        ref = await store.put(chunked(content, 100_000))
        windows = [
            (0, 1),
            (0, piece),
            (1, piece),
            (piece - 1, 2),
            (piece, piece),
            (piece - 10, piece + 20),
            (piece * 2 + 5, piece + 50),
            (len(content) - 1, 1),
            (7, len(content) - 7),
        ]
        for offset, length in windows:
            reader = await store.open(ref.sha256, offset=offset, length=length)
            assert (reader.offset, reader.length, reader.ref) == (offset, length, ref)
            await reader.aclose()
            got = await read_all(store, ref.sha256, offset, length)
            assert got == content[offset : offset + length], (offset, length)

    async def test_offset_alone_reads_to_the_end(self, store: BlobStore, piece: int) -> None:
        content = random_content(piece + 500)
        ref = await store.put(chunked(content, 4096))
        assert await read_all(store, ref.sha256, piece + 3) == content[piece + 3 :]

    async def test_length_past_the_end_is_cut_at_the_end(self, store: BlobStore) -> None:
        content = random_content(1000)
        ref = await store.put(chunked(content, 1000))
        reader = await store.open(ref.sha256, offset=900, length=5000)
        assert reader.length == 100
        await reader.aclose()
        assert await read_all(store, ref.sha256, 900, 5000) == content[900:]

    async def test_empty_ranges_read_nothing(self, store: BlobStore) -> None:
        content = random_content(1000)
        ref = await store.put(chunked(content, 1000))
        assert await read_all(store, ref.sha256, 1000) == b""
        assert await read_all(store, ref.sha256, 10, 0) == b""

    async def test_offset_past_the_end_is_invalid_and_names_the_size(
        self, store: BlobStore
    ) -> None:
        content = random_content(1000)
        ref = await store.put(chunked(content, 1000))
        with pytest.raises(InvalidArgument, match="1000-byte") as info:
            await store.open(ref.sha256, offset=1001)
        assert "offset" in info.value.message

    @pytest.mark.parametrize(
        ("offset", "length", "field"), [(-1, None, "offset"), (0, -5, "length")]
    )
    async def test_negative_offsets_and_lengths_are_invalid(
        self, store: BlobStore, offset: int, length: int | None, field: str
    ) -> None:
        ref = await store.put(chunked(random_content(100), 100))
        with pytest.raises(InvalidArgument, match=field):
            await store.open(ref.sha256, offset=offset, length=length)
