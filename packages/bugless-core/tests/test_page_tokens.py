from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bugless_core.errors import InvalidArgument
from bugless_core.page_tokens import CarriedTotal, PageTokenCodec

CODEC = PageTokenCodec("a-secret-of-sixteen+")
positions = st.lists(st.one_of(st.integers(), st.text(max_size=20), st.none()), max_size=5)


@given(position=positions, fingerprint=st.text(max_size=16))
def test_tokens_round_trip(position: list[object], fingerprint: str) -> None:
    assert CODEC.decode(CODEC.encode(position, fingerprint), fingerprint) == position


@given(
    position=positions,
    fingerprint=st.text(max_size=16),
    count=st.integers(min_value=0, max_value=2**62),
    lower_bound=st.booleans(),
)
def test_a_carried_total_comes_back_with_its_position(
    position: list[object], fingerprint: str, count: int, lower_bound: bool
) -> None:
    token = CODEC.encode(position, fingerprint, CarriedTotal(count, lower_bound))
    assert CODEC.decode_page(token, fingerprint) == (position, CarriedTotal(count, lower_bound))
    assert CODEC.decode(token, fingerprint) == position


def test_a_token_issued_before_totals_were_carried_still_decodes_without_one() -> None:
    # Issued by the codec before CarriedTotal existed (same secret, request "f").
    old = (
        "FXQ0y7ZYapnqtH2oXUghBHsidiI6MSwicCI6WyIyMDI2LTEyLTAzVDExOjAwOjAw"
        "KzAwOjAwIiw0Ml0sImYiOiJmIn0"
    )
    assert CODEC.decode_page(old, "f") == (["2026-12-03T11:00:00+00:00", 42], None)
    assert CODEC.decode_page(CODEC.encode([1], "f"), "f") == ([1], None)


def test_a_token_with_a_carried_total_is_still_bound_to_its_request() -> None:
    token = CODEC.encode([1], "query-a", CarriedTotal(10_000, lower_bound=True))
    with pytest.raises(InvalidArgument, match="belongs to a different request"):
        CODEC.decode_page(token, "query-b")


@given(token=st.text(max_size=64))
def test_arbitrary_text_is_never_accepted_as_a_token(token: str) -> None:
    with pytest.raises(InvalidArgument, match="page_token"):
        CODEC.decode(token, "f")


def test_an_altered_token_is_rejected() -> None:
    token = CODEC.encode([42, "x"], "f")
    altered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(InvalidArgument, match=r"signature mismatch|not a page token"):
        CODEC.decode(altered, "f")


def test_a_token_of_another_request_is_rejected() -> None:
    token = CODEC.encode([1], "query-a")
    with pytest.raises(InvalidArgument, match="belongs to a different request"):
        CODEC.decode(token, "query-b")


def test_a_token_signed_with_another_secret_is_rejected() -> None:
    token = PageTokenCodec("another-secret-16-bytes").encode([1], "f")
    with pytest.raises(InvalidArgument, match="signature mismatch"):
        CODEC.decode(token, "f")


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        PageTokenCodec("short")
