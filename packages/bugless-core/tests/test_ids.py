"""The one id rule (bugless_core.ids), and the Model and search language that use it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bugless_core.errors import InvalidArgument
from bugless_core.ids import MAX_ID, check_id, parse_id, try_parse_id
from bugless_core.model import _validation
from bugless_core.search import QuerySyntaxError, parse_query

IN_RANGE = st.integers(min_value=1, max_value=MAX_ID)
#: Past the top: what int64 would wrap (2**63.., 2**64 + n...) and beyond.
TOO_LARGE = st.integers(min_value=MAX_ID + 1, max_value=2**200)
#: Texts int() reads as an id that are not written as one.
ALIASES = IN_RANGE.flatmap(
    lambda n: st.sampled_from(
        [
            f"+{n}",
            f" {n}",
            f"{n} ",
            f"{n}\n",
            f"{str(n)[0]}_{str(n)[1:]}" if n >= 10 else f"+{n}",
            # Arabic-Indic and fullwidth digits: int() reads both.
            str(n).translate({48 + d: 0x0660 + d for d in range(10)}),
            str(n).translate({48 + d: 0xFF10 + d for d in range(10)}),
        ]
    )
)


@given(IN_RANGE, st.integers(min_value=0, max_value=30))
def test_every_id_in_range_reads_back_leading_zeros_or_not(value: int, zeros: int) -> None:
    assert parse_id("0" * zeros + str(value), "issue_id") == value
    assert check_id(value, "issue_id") == value
    assert try_parse_id(str(value)) == value


@given(TOO_LARGE | st.integers(max_value=0))
def test_out_of_range_ids_are_refused_naming_the_field_and_range(value: int) -> None:
    with pytest.raises(InvalidArgument) as parsed:
        parse_id(str(value), "issue_id")
    with pytest.raises(InvalidArgument) as checked:
        check_id(value, "issue_id")
    for refused in (parsed, checked):
        assert refused.value.message.startswith("issue_id: ")
        assert "1..9223372036854775807" in refused.value.message
        assert refused.value.metadata == {"field": "issue_id"}
    assert try_parse_id(str(value)) is None


@given(ALIASES | st.text().filter(lambda t: not (t.isascii() and t.isdigit())))
def test_texts_that_int_would_accept_are_no_ids(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_id(text, "issue_id")


@given(st.integers(min_value=1, max_value=10**6))
def test_two_to_the_64_plus_n_is_never_n(n: int) -> None:
    assert try_parse_id(str(2**64 + n)) is None
    assert try_parse_id(str(n)) == n


def test_zero_is_an_id_only_where_it_means_none() -> None:
    assert parse_id("0", "parent_id", allow_zero=True) == 0
    with pytest.raises(InvalidArgument, match="or 0 for none"):
        parse_id("-0", "parent_id", allow_zero=True)
    with pytest.raises(InvalidArgument, match="too large"):
        parse_id(str(2**64), "parent_id", allow_zero=True)
    with pytest.raises(InvalidArgument):
        parse_id("0", "issue_id")


def test_huge_texts_are_refused_without_reading_them_as_numbers() -> None:
    with pytest.raises(InvalidArgument, match=r"too large") as refused:
        parse_id("9" * 100_000, "issue_id")
    assert len(refused.value.message) < 300


@given(TOO_LARGE | st.integers(min_value=-(2**63), max_value=0))
def test_the_model_refuses_ids_out_of_range(value: int) -> None:
    with pytest.raises(InvalidArgument) as refused:
        _validation.check_ids([1, value], "issue_ids", 10)
    assert refused.value.metadata == {"field": "issue_ids[1]"}


@given(IN_RANGE)
def test_the_search_language_reads_ids_with_the_same_rule(value: int) -> None:
    assert parse_query(f"id:{value}").filter is not None
    with pytest.raises(QuerySyntaxError, match="too large"):
        parse_query(f"id:{2**64 + value}")
    with pytest.raises(QuerySyntaxError, match="expected a number"):
        parse_query(f"blockingid:+{value}")
