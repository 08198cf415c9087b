"""The blob store conformance suite: one contract class per behaviour area.

A store's ``tests/test_blob_conformance.py`` subclasses each class in one
line and provides one fixture, ``blob_store_under_test``, returning a
:class:`StoreUnderTest` (the open store, a footprint measured from its
storage directly, and its piece size)::

    @pytest.fixture(scope="session")
    async def blob_store_under_test(...) -> AsyncIterator[StoreUnderTest]:
        ...

    class TestRoundTrip(RoundTripContract): ...

The suite is self-contained (it imports only :mod:`bugless_core.blobs` and
:mod:`bugless_core.errors`), so it moves with the testing package as a whole.
"""

from __future__ import annotations

from bugless_testing.blob_contracts._concurrency import ConcurrencyContract
from bugless_testing.blob_contracts._dedup import DedupContract
from bugless_testing.blob_contracts._delete import DeleteContract
from bugless_testing.blob_contracts._limits import LimitContract
from bugless_testing.blob_contracts._missing import MissingBlobContract
from bugless_testing.blob_contracts._ranges import RangeContract
from bugless_testing.blob_contracts._round_trip import RoundTripContract
from bugless_testing.blob_contracts._support import (
    Footprint,
    StoreUnderTest,
    chunked,
    random_content,
    read_all,
)

#: Every contract, for a store's tests to subclass.
ALL_CONTRACTS = (
    ConcurrencyContract,
    DedupContract,
    DeleteContract,
    LimitContract,
    MissingBlobContract,
    RangeContract,
    RoundTripContract,
)

__all__ = [
    "ALL_CONTRACTS",
    "ConcurrencyContract",
    "DedupContract",
    "DeleteContract",
    "Footprint",
    "LimitContract",
    "MissingBlobContract",
    "RangeContract",
    "RoundTripContract",
    "StoreUnderTest",
    "chunked",
    "random_content",
    "read_all",
]
