"""Remembered HPACK blocks: the same bytes and headers as hpack's own coder, call after call."""

from __future__ import annotations

from typing import Any

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import RequestReceived, ResponseReceived, TrailersReceived
from hpack import Decoder, Encoder, NeverIndexedHeaderTuple
from hpack.exceptions import OversizedHeaderListError
from hypothesis import given, settings
from hypothesis import strategies as st

from bugless_core.grpc import _hpack

_NAMES = [b":path", b"content-type", b"grpc-timeout", b"bugless-assertion", b"x-a", b"x-b"]
_VALUES = [b"", b"0", b"1S", b"/bugless.v1.Model/SearchIssues", b"application/grpc", b"v" * 300]

_header = st.tuples(st.sampled_from(_NAMES), st.sampled_from(_VALUES))
#: A step: a header list to code (some fields never indexed), or a new table size.
_step = st.one_of(
    st.lists(
        st.tuples(_header, st.booleans()).map(
            lambda hs: NeverIndexedHeaderTuple(*hs[0]) if hs[1] else hs[0]
        ),
        max_size=6,
    ),
    st.sampled_from([0, 64, 400, 4096]),
)


def _outcome(decoder: Decoder, block: bytes) -> object:
    try:
        return list(decoder.decode(block, raw=True))
    except Exception as exc:  # the refusal is the outcome compared
        return type(exc), str(exc)


def _coders() -> tuple[Encoder, Decoder, Encoder, Decoder]:
    plain_encoder, plain_decoder = Encoder(), Decoder()
    connection = H2Connection()
    _hpack.install(connection)
    assert type(connection.encoder) is _hpack.MemoEncoder
    assert type(connection.decoder) is _hpack.MemoDecoder
    return plain_encoder, plain_decoder, connection.encoder, connection.decoder


@settings(max_examples=300, deadline=None)
@given(st.lists(_step, max_size=40))
def test_memo_coders_agree_with_hpack(steps: list[Any]) -> None:
    """Every block is byte-identical, every decode equal, through inserts, evictions, resizes."""
    plain_encoder, plain_decoder, memo_encoder, memo_decoder = _coders()
    for step in steps:
        if isinstance(step, int):
            plain_encoder.header_table_size = memo_encoder.header_table_size = step
            continue
        for repeat in range(2):
            block = plain_encoder.encode(list(step))
            assert memo_encoder.encode(list(step)) == block, repeat
            # hpack forgets a resize set twice (its ``resized`` flag), so a
            # decoder may refuse a block: then both refuse it alike.
            assert _outcome(memo_decoder, block) == _outcome(plain_decoder, block)
        assert (
            memo_encoder.header_table.dynamic_entries == plain_encoder.header_table.dynamic_entries
        )
        assert (
            memo_decoder.header_table.dynamic_entries == plain_decoder.header_table.dynamic_entries
        )


def test_a_remembered_block_still_honours_the_header_list_limit() -> None:
    """A limit lowered after a block was remembered fails that block as hpack does."""
    encoder, _, _, decoder = _coders()
    headers = [(b"bugless-assertion", b"v" * 300)]
    decoder.decode(encoder.encode(headers), raw=True)  # a literal: into the table
    block = encoder.encode(headers)  # indexed now: leaves the table as it is
    assert decoder.decode(block, raw=True) == [(b"bugless-assertion", b"v" * 300)]
    assert block in decoder._memo  # type: ignore[attr-defined]
    decoder.max_header_list_size = 100
    with pytest.raises(OversizedHeaderListError):
        decoder.decode(block, raw=True)


def test_a_remembered_decode_is_a_new_list() -> None:
    """Changing the list a decode returned does not change the next decode of that block."""
    encoder, _, _, decoder = _coders()
    headers = [(b"content-type", b"application/grpc")]
    block = encoder.encode(headers)
    first = list(decoder.decode(block, raw=True))
    block = encoder.encode(headers)
    second = decoder.decode(block, raw=True)
    assert isinstance(second, list)
    second.clear()
    assert list(decoder.decode(block, raw=True)) == first


def _config(client_side: bool) -> H2Configuration:
    # grpclib's settings: headers as ASCII strings, no validation.
    return H2Configuration(
        client_side=client_side,
        header_encoding="ascii",
        validate_inbound_headers=False,
        validate_outbound_headers=False,
        normalize_inbound_headers=False,
        normalize_outbound_headers=False,
    )


_REPLY = [(":status", "200"), ("content-type", "application/grpc+proto")]


def _strings(headers: Any) -> list[tuple[str, str]]:
    """Headers as h2 hands them over with ``header_encoding`` (strings), as plain tuples."""
    return [(str(name), str(value)) for name, value in headers or []]


def test_h2_connections_with_memo_coders_exchange_calls() -> None:
    """Fifty gRPC-shaped calls: each side receives exactly the headers the other sent."""
    client, server = H2Connection(_config(True)), H2Connection(_config(False))
    client.initiate_connection()
    server.initiate_connection()
    _hpack.install(client)
    _hpack.install(server)
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    for call in range(50):
        stream = client.get_next_available_stream_id()
        request = [
            (":method", "POST"),
            (":scheme", "https"),
            (":path", "/bugless.v1.Model/SearchIssues"),
            (":authority", "model"),
            ("te", "trailers"),
            ("content-type", "application/grpc+proto"),
            # A value new on every third call: the table changes under the remembered blocks.
            ("grpc-timeout", f"{call // 3}m"),
        ]
        client.send_headers(stream, request)
        client.send_data(stream, b"\x00\x00\x00\x00\x00", end_stream=True)
        events = server.receive_data(client.data_to_send())
        received = [_strings(e.headers) for e in events if isinstance(e, RequestReceived)]
        assert received == [request]
        server.send_headers(stream, _REPLY)
        server.send_data(stream, b"\x00\x00\x00\x00\x00")
        server.send_headers(stream, [("grpc-status", "0")], end_stream=True)
        events = client.receive_data(server.data_to_send())
        reply = [_strings(e.headers) for e in events if isinstance(e, ResponseReceived)]
        trailers = [_strings(e.headers) for e in events if isinstance(e, TrailersReceived)]
        assert reply == [_REPLY]
        assert trailers == [[("grpc-status", "0")]]
        server.receive_data(client.data_to_send())
    assert server.decoder._memo  # type: ignore[attr-defined]
    assert server.encoder._memo  # type: ignore[attr-defined]
