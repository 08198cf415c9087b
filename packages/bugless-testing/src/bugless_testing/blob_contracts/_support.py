"""What every blob contract shares: the store under test, its footprint, content helpers.

A store's tests provide one fixture, ``blob_store_under_test``, returning a
:class:`StoreUnderTest`: the open store, a way to measure what it holds
(:class:`Footprint`), and the size at which it cuts content into pieces, so
the contracts can write content spanning several pieces without knowing the
store. The fixture may be session-scoped: every contract writes content no
other test writes (random bytes), and compares footprints before and after,
never absolute numbers.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from bugless_core.blobs import BlobRef, BlobStore


@dataclass(frozen=True)
class Footprint:
    """What a store holds right now, as its own storage counts it.

    Attributes:
        stored_bytes: Bytes of complete content (rows, objects) in the store's
            namespace; what storing a blob costs.
        blobs: Complete blobs stored.
        pending: Anything of an unfinished write still present: chunk rows no
            blob owns, multipart uploads in progress, temporary objects.
            Zero whenever no put is running.
    """

    stored_bytes: int
    blobs: int
    pending: int


@dataclass(frozen=True)
class StoreUnderTest:
    """The one thing a store's tests hand the contracts.

    Attributes:
        store: The open store.
        footprint: Measures the store's storage directly (SQL, object listing),
            not through the store's own API.
        piece_size: Bytes per piece the store cuts content into (a chunk row,
            a multipart part); contracts write content of several pieces.
    """

    store: BlobStore
    footprint: Callable[[], Awaitable[Footprint]]
    piece_size: int


def random_content(size: int) -> bytes:
    """Content no other test (nor any earlier run) has written."""
    return os.urandom(size)


def ref_of(content: bytes) -> BlobRef:
    """The reference a store must return for ``content``."""
    return BlobRef(hashlib.sha256(content).hexdigest(), len(content))


async def chunked(content: bytes, chunk_size: int) -> AsyncIterator[bytes]:
    """``content`` as a stream of ``chunk_size`` chunks, yielding to the loop between them.

    The pause lets concurrent puts interleave chunk by chunk, as uploads
    arriving over the network do.
    """
    for start in range(0, len(content), chunk_size):
        await asyncio.sleep(0)
        yield content[start : start + chunk_size]


async def broken_stream(content: bytes, chunk_size: int, error: Exception) -> AsyncIterator[bytes]:
    """``content`` in chunks, then ``error`` instead of the end (a dropped connection)."""
    async for chunk in chunked(content, chunk_size):
        yield chunk
    raise error


async def read_all(
    store: BlobStore, sha256: str, offset: int = 0, length: int | None = None
) -> bytes:
    """Read a blob (or a range) through :meth:`BlobStore.open` into memory (small blobs only)."""
    parts: list[bytes] = []
    async with await store.open(sha256, offset=offset, length=length) as reader:
        async for chunk in reader:
            assert chunk, "a store must not yield empty chunks"
            parts.append(chunk)
    return b"".join(parts)


class BlobContractBase:
    """Fixtures every contract class inherits from the one ``blob_store_under_test``."""

    @pytest.fixture
    def store(self, blob_store_under_test: StoreUnderTest) -> BlobStore:
        """The store under test."""
        return blob_store_under_test.store

    @pytest.fixture
    def piece(self, blob_store_under_test: StoreUnderTest) -> int:
        """The store's piece size."""
        return blob_store_under_test.piece_size

    @pytest.fixture
    def footprint(
        self, blob_store_under_test: StoreUnderTest
    ) -> Callable[[], Awaitable[Footprint]]:
        """Measure the store's storage now."""
        return blob_store_under_test.footprint
