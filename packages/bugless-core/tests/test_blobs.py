"""The store-independent rules of bugless_core.blobs: hashing, pieces, ranges, settings."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bugless_core.blobs import (
    DEFAULT_STORE,
    EMPTY_SHA256,
    BlobRef,
    BlobUpload,
    check_sha256,
    connect_blob_store,
    describe_size,
    resolve_range,
)
from bugless_core.errors import InvalidArgument, SizeLimitExceeded
from bugless_core.plugins import load_plugins
from bugless_core.registry import UnknownBackendError
from bugless_core.settings import setting, settings_from_environ


async def _stream(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def _drain(upload: BlobUpload, piece: int | None = None) -> list[bytes]:
    if piece is None:
        return [chunk async for chunk in upload]
    return [p async for p in upload.pieces(piece)]


async def test_upload_hashes_and_counts_what_streams_through() -> None:
    upload = BlobUpload(_stream(b"hello ", b"", b"world"), max_size=None)
    assert await _drain(upload) == [b"hello ", b"world"]
    assert upload.ref() == BlobRef(hashlib.sha256(b"hello world").hexdigest(), 11)


async def test_upload_of_nothing_is_the_empty_hash() -> None:
    upload = BlobUpload(_stream(), max_size=0)
    assert await _drain(upload) == []
    assert upload.ref() == BlobRef(EMPTY_SHA256, 0)


async def test_ref_before_the_end_is_a_programming_error() -> None:
    upload = BlobUpload(_stream(b"abc"), max_size=None)
    with pytest.raises(RuntimeError, match="end"):
        upload.ref()


async def test_upload_trips_the_limit_on_the_chunk_that_crosses_it() -> None:
    upload = BlobUpload(_stream(b"12345", b"67890", b"x"), max_size=10)
    assert await anext(upload) == b"12345"
    assert await anext(upload) == b"67890"
    with pytest.raises(SizeLimitExceeded) as info:
        await anext(upload)
    assert info.value.limit_bytes == 10
    assert "10 bytes" in info.value.message


async def test_upload_refuses_text_chunks() -> None:
    upload = BlobUpload(_stream("text"), max_size=None)  # type: ignore[arg-type]  # the wrong type on purpose
    with pytest.raises(TypeError, match="bytes"):
        await anext(upload)


@given(
    content=st.binary(max_size=3000),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=12),
    piece=st.integers(min_value=1, max_value=700),
)
async def test_pieces_are_equal_whatever_the_chunks(
    content: bytes, cuts: list[int], piece: int
) -> None:
    bounds = sorted({0, len(content), *(c for c in cuts if c <= len(content))})
    chunks = [content[a:b] for a, b in itertools.pairwise(bounds)]
    upload = BlobUpload(_stream(*chunks), max_size=None)
    pieces = await _drain(upload, piece)
    assert b"".join(pieces) == content
    assert all(len(p) == piece for p in pieces[:-1])
    assert not pieces or 0 < len(pieces[-1]) <= piece
    assert upload.ref() == BlobRef(hashlib.sha256(content).hexdigest(), len(content))


@given(
    size=st.integers(min_value=0, max_value=100),
    offset=st.integers(min_value=0, max_value=100),
    length=st.none() | st.integers(min_value=0, max_value=150),
)
def test_a_range_is_what_slicing_would_give(size: int, offset: int, length: int | None) -> None:
    content = bytes(range(size))
    if offset > size:
        with pytest.raises(InvalidArgument, match="past the end"):
            resolve_range(size, offset, length)
        return
    start, count = resolve_range(size, offset, length)
    expected = content[offset:] if length is None else content[offset : offset + length]
    assert content[start : start + count] == expected


@pytest.mark.parametrize("bad", ["", "A" * 64, "0" * 63, "../etc/passwd", "z" * 64])
def test_a_malformed_hash_is_invalid_and_names_the_field(bad: str) -> None:
    with pytest.raises(InvalidArgument, match=r"attachment\.sha256"):
        check_sha256(bad, "attachment.sha256")


def test_sizes_are_described_for_people() -> None:
    assert describe_size(512) == "512 bytes"
    assert describe_size(10 * 1024 * 1024) == "10 MiB"
    assert describe_size(1536 * 1024 * 1024) == "1.5 GiB"


@dataclass(frozen=True)
class _Settings:
    bucket: str = setting(env="BUGLESS_TEST_BUCKET", help="where blobs go")
    parts: int = setting(env="BUGLESS_TEST_PARTS", default=3, help="how many")
    verify: bool = setting(env="BUGLESS_TEST_VERIFY", default=False, help="check")


def test_settings_are_read_from_their_variables() -> None:
    settings = settings_from_environ(
        _Settings,
        {"BUGLESS_TEST_BUCKET": "b", "BUGLESS_TEST_PARTS": "7", "BUGLESS_TEST_VERIFY": "yes"},
    )
    assert settings == _Settings(bucket="b", parts=7, verify=True)
    assert settings_from_environ(_Settings, {"BUGLESS_TEST_BUCKET": "b"}) == _Settings("b")


def test_a_missing_required_setting_names_its_variable() -> None:
    with pytest.raises(InvalidArgument, match=r"BUGLESS_TEST_BUCKET is not set.*where blobs go"):
        settings_from_environ(_Settings, {"BUGLESS_TEST_BUCKET": ""})


@pytest.mark.parametrize(
    ("variable", "value", "complaint"),
    [
        ("BUGLESS_TEST_PARTS", "many", "valid integer"),
        ("BUGLESS_TEST_VERIFY", "maybe", "valid boolean"),
    ],
)
def test_a_malformed_setting_names_its_variable(variable: str, value: str, complaint: str) -> None:
    with pytest.raises(InvalidArgument, match=rf"{variable}: '{value}' is not .*{complaint}"):
        settings_from_environ(_Settings, {"BUGLESS_TEST_BUCKET": "b", variable: value})


async def test_an_unknown_store_name_lists_the_installed_ones() -> None:
    plugins = load_plugins(entry_points=False)
    with pytest.raises(UnknownBackendError, match=r"unknown blob store 'tape'.*install a package"):
        await connect_blob_store(plugins.blob_stores, {"BUGLESS_BLOB_STORE": "tape"})
    with pytest.raises(UnknownBackendError, match=repr(DEFAULT_STORE)):
        await connect_blob_store(plugins.blob_stores, {})
