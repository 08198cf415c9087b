"""Missing and malformed hashes: NotFound and InvalidArgument, never a store error."""

from __future__ import annotations

import hashlib

import pytest

from bugless_core.blobs import BlobStore
from bugless_core.errors import InvalidArgument, NotFound
from bugless_testing.blob_contracts._support import BlobContractBase, random_content

MALFORMED = [
    "",
    "abc",
    "A" * 64,
    "g" * 64,
    "0" * 63,
    "0" * 65,
    "../" + "0" * 61,
    "0" * 62 + "/x",
]


class MissingBlobContract(BlobContractBase):
    """A hash nothing was stored under is NotFound everywhere; a malformed one is invalid."""

    async def test_content_never_stored_is_not_found(self, store: BlobStore) -> None:
        sha = hashlib.sha256(random_content(64)).hexdigest()
        assert not await store.exists(sha)
        with pytest.raises(NotFound, match=sha):
            await store.open(sha)
        with pytest.raises(NotFound, match=sha):
            await store.stat(sha)
        with pytest.raises(NotFound):
            await store.open(sha, offset=0, length=0)
        assert await store.delete(sha) is False

    @pytest.mark.parametrize("bad", MALFORMED)
    async def test_malformed_hash_is_invalid_everywhere(self, store: BlobStore, bad: str) -> None:
        for call in (store.open(bad), store.stat(bad), store.exists(bad), store.delete(bad)):
            with pytest.raises(InvalidArgument, match="sha256"):
                await call
