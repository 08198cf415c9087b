"""What a directory's username may be: the local grammar, no compatibility forms, one script."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bugless_core.usernames import is_valid_username, placeholder_username, username_problem


@pytest.mark.parametrize(
    "name",
    [
        "alice",
        "jürgen.müller@example.com",
        "O\u0308laf",  # decomposed: NFC is "Ölaf"
        "\u0905\u0928\u093f\u0932",  # Devanagari with a vowel sign (a combining mark)
        "\u5c71\u7530\u305f\u308d\u3046",  # Han and Hiragana: Japanese
        "yamada\u5c71\u7530",  # Latin with Han
        "\uae40\ucca0\uc218",  # Hangul
        "\u03a9\u03bc\u03ad\u03b3\u03b1",  # Greek
        "\u0645\u0631\u062d\u0628\u0627\u0661",  # Arabic letters, Arabic-Indic digit
        "d\u02bcartagnan",  # a modifier letter takes no script
        "user_1",
    ],
)
def test_names_of_one_script_in_the_grammar_pass(name: str) -> None:
    assert username_problem(name) is None
    assert is_valid_username(unicodedata.normalize("NFC", name))


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "is empty"),
        ("a" * 129, "is longer than 128 characters (129)"),
        ("a b", "holds ' ' (U+0020 SPACE)"),
        ("a/b", "holds '/' (U+002F SOLIDUS)"),
        ("@alice", "starts with '@' (U+0040 COMMERCIAL AT)"),
        ("a,b", "holds ',' (U+002C COMMA)"),
        ("a:b", "holds ':' (U+003A COLON)"),
        ("_a", "starts with '_'"),
        ("p\u0430ul", "mixes scripts (CYRILLIC, LATIN)"),
        ("abc\u0661", "mixes scripts (ARABIC, LATIN)"),
        ("\uff41dmin", "holds '\uff41' (U+FF41 FULLWIDTH LATIN SMALL LETTER A), a compatibility"),
        ("\U0001d41admin", "a compatibility form of 'a'"),
        ("\ufb01n", "a compatibility form of 'fi'"),
        ("x\u00b2", "a compatibility form of '2'"),
    ],
)
def test_names_that_break_search_or_pass_for_another_are_refused_with_why(
    name: str, problem: str
) -> None:
    assert problem in (username_problem(name) or "-")


@given(
    source=st.from_regex(r"[a-z][a-z0-9_-]{0,31}", fullmatch=True),
    username=st.text(max_size=300),
    email=st.text(max_size=300),
    key=st.text(min_size=1, max_size=256),
    attempt=st.integers(min_value=1, max_value=999),
)
def test_every_placeholder_of_an_imported_person_is_a_usable_username(
    source: str, username: str, email: str, key: str, attempt: int
) -> None:
    # The people import makes no other names: they pass the directories' rule.
    name = placeholder_username(source, username=username, email=email, key=key, attempt=attempt)
    assert username_problem(name) is None, name
