"""HPACK header blocks a connection sends or receives again and again, coded once.

Every gRPC call on a connection carries nearly the same headers: a client's
request (``:method``, ``:path``, ``content-type``, ``te``, its assertion...)
and a server's reply headers (``:status``, ``content-type``) and trailers
(``grpc-status: 0``). After the first call each of them is in the HPACK
dynamic table, so the header block is a few index bytes, the same bytes
every call, and it leaves the table as it was. hpack (pure Python) still
decodes such a block field by field (~30 µs for a Model request's eight
headers) and encodes the reply's two blocks field by field (~10 µs): on a
one-client search page through the served Model that is ~6 % of the Model's
hop (bench/JOURNAL.md, session 10).

:class:`MemoDecoder` and :class:`MemoEncoder` are hpack's ``Decoder`` and
``Encoder`` that remember the result of a block that left the dynamic table
untouched, keyed by the block's bytes (decoding) or the header list
(encoding). The result of such a block depends only on the key and on the
table's content, so a remembered result is exact for as long as the table is
unchanged: a call that changes the table (an indexed literal, an eviction, a
size change), or finds it changed since the last call (h2 resizes the
encoder's table when the peer's SETTINGS say so), forgets everything
remembered. A table is taken as unchanged
when its size limit, its number of entries and its newest entry (the object,
not an equal one: every insertion makes a new tuple) are the same before and
after: an insertion changes the newest entry, an eviction without one the
number of entries. A remembered decode still checks the limits of the moment
(header list size, table size), falling back to hpack's own decode, which
raises as it would have. Header lists are remembered only when they are a
plain ``list`` of plain 2-tuples (what h2 passes): a ``NeverIndexedHeaderTuple``
equals a tuple of the same strings but is encoded differently.

The only visible difference is hpack's own debug log lines ("Decoding ...",
"Adding ... to the header table"), not written for a remembered block.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from h2.connection import H2Connection
from hpack import Decoder, Encoder, HeaderTuple
from hpack.table import HeaderTable, table_entry_size

#: Blocks remembered per direction and connection; all are forgotten when
#: there would be more (a connection's calls use a handful of shapes).
MEMO_ENTRIES = 64

#: The HPACK dynamic table a corked connection offers its peer
#: (SETTINGS_HEADER_TABLE_SIZE; HTTP/2's default is 4 KiB). The API calls the
#: Model with each bot connection's own identity assertion (~420 bytes, ~470
#: in the table): with 16 bots the 4 KiB table evicted them round-robin, so
#: every call sent its assertion as a Huffman-coded literal, coded and decoded
#: in pure Python on both ends (bench/JOURNAL.md, session 10). 32 KiB keeps
#: ~60 of them indexed, at most 32 KiB of memory per connection and direction.
HEADER_TABLE_BYTES = 32 * 1024

_Snapshot = tuple[int, int, object]


def _snapshot(table: HeaderTable) -> _Snapshot:
    entries = table.dynamic_entries
    return table.maxsize, len(entries), entries[0] if entries else None


def _same(a: _Snapshot, b: _Snapshot) -> bool:
    return a[0] == b[0] and a[1] == b[1] and a[2] is b[2]


class MemoDecoder(Decoder):
    """hpack's ``Decoder`` remembering the blocks that did not change its table."""

    _memo: dict[bytes, tuple[tuple[HeaderTuple, ...], int]]
    #: The table as the remembered blocks found it.
    _state: _Snapshot

    def decode(self, data: bytes, raw: bool = False) -> Iterable[HeaderTuple]:
        """The headers of ``data``, as hpack decodes them."""
        table = self.header_table
        memo = self._memo
        before = _snapshot(table)
        if memo and not _same(before, self._state):
            memo.clear()
        key = data if raw and type(data) is bytes else None
        if key is not None:
            hit = memo.get(key)
            if (
                hit is not None
                and hit[1] <= self.max_header_list_size
                and table.maxsize <= self.max_allowed_table_size
            ):
                return list(hit[0])
        try:
            headers = list(super().decode(data, raw))
        except BaseException:
            memo.clear()
            raise
        after = self._state = _snapshot(table)
        if not _same(before, after):
            memo.clear()
        elif key is not None:
            if len(memo) >= MEMO_ENTRIES:
                memo.clear()
            size = sum(table_entry_size(name, value) for name, value in headers)
            memo[key] = (tuple(headers), size)
        return headers


class MemoEncoder(Encoder):
    """hpack's ``Encoder`` remembering the header lists that did not change its table."""

    _memo: dict[tuple[tuple[Any, ...], ...], bytes]
    #: The table as the remembered lists found it.
    _state: _Snapshot

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        """The header block of ``headers``, as hpack encodes it."""
        table = self.header_table
        memo = self._memo
        before = _snapshot(table)
        if memo and not _same(before, self._state):
            memo.clear()
        resized = table.resized
        key = _key(headers) if huffman and not resized else None
        if key is not None:
            hit = memo.get(key)
            if hit is not None:
                return hit
        try:
            encoded = super().encode(headers, huffman)
        except BaseException:
            memo.clear()
            raise
        after = self._state = _snapshot(table)
        if resized or not _same(before, after):
            memo.clear()
        elif key is not None:
            if len(memo) >= MEMO_ENTRIES:
                memo.clear()
            memo[key] = encoded
        return encoded


def _key(headers: Any) -> tuple[tuple[Any, ...], ...] | None:
    """``headers`` as a memo key: only a list of plain tuples (h2's own header lists)."""
    if type(headers) is not list:
        return None
    for header in headers:
        if type(header) is not tuple:
            return None
    return tuple(headers)


def install(connection: H2Connection) -> None:
    """Make ``connection``'s HPACK encoder and decoder remember their repeated blocks.

    Their state (tables, limits h2 set) is kept: only their class changes.
    """
    encoder, decoder = connection.encoder, connection.decoder
    if type(encoder) is Encoder:
        encoder._memo = {}  # type: ignore[attr-defined]
        encoder._state = _snapshot(encoder.header_table)  # type: ignore[attr-defined]
        encoder.__class__ = MemoEncoder
    if type(decoder) is Decoder:
        decoder._memo = {}  # type: ignore[attr-defined]
        decoder._state = _snapshot(decoder.header_table)  # type: ignore[attr-defined]
        decoder.__class__ = MemoDecoder
