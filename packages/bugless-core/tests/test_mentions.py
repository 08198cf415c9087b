"""``@mentions`` read every username bugless accepts, compared by ``username_key``, in prose.

The grammar (:mod:`bugless_core.mentions`) is built from the usernames' own
character classes (:mod:`bugless_core.usernames`); these tests hold the
classes to their definitions over every code point, the grammar to the names
written in prose (any script, case, NFC or NFD), the Markdown around them to
the reading the web renders (a mention in code or a link is none), and the
search language's ``mention:`` to the same keys.
"""

from __future__ import annotations

import html
import re
import sys
import unicodedata
from datetime import date

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from bugless_core import mentions
from bugless_core.markdown import markdown_parser
from bugless_core.mentions import find_mentions, mentioned_usernames, mentions_as_written
from bugless_core.search import parse_query, to_structured, user_terms
from bugless_core.search._ast import RESERVED_USER_WORDS
from bugless_core.usernames import (
    MARK_PLANES,
    USERNAME_MAX_LENGTH,
    is_combining_mark,
    is_username_character,
    is_valid_username,
    username_classes,
    username_key,
)
from bugless_testing.usernames import markdown_texts, usernames

#: Prose around a mention: punctuation after it, brackets, Markdown emphasis.
CONTEXTS = (
    "@{}",
    "ping @{}, thanks",
    "(@{})",
    "ask @{}.",
    "@{}: look\nat this",
    "“@{}”",
    "**@{}**",
    "- [ ] @{}'s part",
    "cc @{}; @{}!",
)


def test_the_classes_are_their_definitions_for_every_code_point() -> None:
    classes = username_classes()
    first, inner = re.compile(classes.first), re.compile(classes.inner)
    for code in range(sys.maxunicode + 1):
        if 0xD800 <= code <= 0xDFFF:
            continue
        ch = chr(code)
        assert (first.fullmatch(ch) is not None) == ch.isalnum(), hex(code)
        assert (inner.fullmatch(ch) is not None) == is_username_character(ch), hex(code)
        if is_combining_mark(ch):
            assert code >> 16 in MARK_PLANES, hex(code)


@given(st.text(max_size=USERNAME_MAX_LENGTH + 2))
def test_a_valid_username_is_a_letter_or_digit_then_username_characters(text: str) -> None:
    expected = (
        1 <= len(text) <= USERNAME_MAX_LENGTH
        and text[0].isalnum()
        and all(is_username_character(ch) for ch in text[1:])
    )
    assert is_valid_username(text) == expected


def test_local_names_of_any_script_are_valid_and_spaces_are_not() -> None:
    for name in ("Ölaf", "josé", "jose\u0301", "अनिल", "Ζωή", "ann@corp.example", "a+b_c-d"):
        assert is_valid_username(name), name
    for name in ("no spaces", "_lead", "-lead", "", "bob\n", "a" * (USERNAME_MAX_LENGTH + 1)):
        assert not is_valid_username(name), name


@given(usernames(), st.sampled_from(CONTEXTS))
def test_every_written_username_is_mentioned_by_its_key(name: str, context: str) -> None:
    text = context.format(*[name] * context.count("{}"))
    found = list(find_mentions(text))
    assert [m.name for m in found] == [name] * context.count("{}")
    assert all(text[m.start : m.end] == "@" + name for m in found)
    # Read as Markdown (as the page shows it), the name is one unit: a "_"
    # beside punctuation in it is no emphasis ("@a_.b, @a_.b" mentions a_.b).
    # Written "\_", as Markdown escapes it, it is the same name.
    assert mentioned_usernames(text) == [username_key(name)]
    markdown = text.replace("_", "\\_")
    assert mentioned_usernames(markdown) == [username_key(name)]
    # Composed or decomposed, in any case, it is one person.
    nfc, nfd = unicodedata.normalize("NFC", name), unicodedata.normalize("NFD", name)
    both = f"@{nfc} @{nfd}".replace("_", "\\_")
    assert mentioned_usernames(both) == [username_key(name)]


@given(usernames())
def test_mention_search_looks_for_the_key_of_every_spelling(name: str) -> None:
    if name.lower() in RESERVED_USER_WORDS:
        return
    for spelling in {name, unicodedata.normalize("NFC", name), unicodedata.normalize("NFD", name)}:
        query = parse_query(f"mention:{spelling}")
        assert user_terms(query) == {spelling}
        structured = to_structured(query, me=None, users={spelling: "u-1"}, today=date(2026, 1, 1))
        assert structured.filter is not None
        assert structured.filter.term is not None
        assert [v.text for v in structured.filter.term.values] == [username_key(name)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail bob@example.com or me@ann.example", []),
        ("@bob, (@bob) and @bob.", ["bob"]),
        ("@Bob @BOB @bob", ["bob"]),
        ("@Ölaf, @ölaf and @O\u0308LAF", ["ölaf"]),
        ("jose\u0301@example.com", []),  # the mark before "@" is part of a word
        ("@josé and @jose\u0301", ["josé"]),
        ("@ann@corp.example.", ["ann@corp.example"]),
        ("@a+b+ and @c_", ["a+b", "c"]),
        ("नमस्ते @अनिल!", ["अनिल"]),
        ("e.g.@bob _@bob x@bob @@bob", []),
        # Read as the web renders it: emphasis around a mention is prose...
        ("_@bob_, *@ann*, __@cy__ and ~~@dee~~", ["bob", "ann", "cy", "dee"]),
        # ...code, links, bare URLs and images are not.
        ("`@coded` and\n```\n@fenced\n```\n\n    @indented", []),
        ("[ask @bob](https://example.com) or https://example.com/@ann", []),
        ("![@bob](https://example.com/bob.png) \\@ann", ["ann"]),
        ("@" + "a" * USERNAME_MAX_LENGTH, ["a" * USERNAME_MAX_LENGTH]),
        ("@" + "a" * (USERNAME_MAX_LENGTH + 1), []),  # longer than any username
        # A name is one unit: the "_" runs in it are never emphasis...
        ("for @0._0_.0.", ["0._0_.0"]),
        ("@a_.b, @a_.b and @c-__d__+e", ["a_.b", "c-__d__+e"]),
        ("@ann@corp_x_.example, @f+_g_+h", ["ann@corp_x_.example", "f+_g_+h"]),
        # ...while emphasis around it, or ending just before its "@", still is.
        (
            "_@a_b_.c_, *@d._e_.f*, **@g__h__.i** ~~@j_.k~~",
            ["a_b_.c", "d._e_.f", "g__h__.i", "j_.k"],
        ),
        ("_see_@bob_x_.y", ["bob_x_.y"]),
        # An "_" left as text before the "@" refuses the mention, as it always did.
        ("_@a_b_c", []),
        ("x_@a_b_.c_", []),
        ("\\_@d_.e_", []),
        # Code, links and e-mail addresses mention nobody, whatever the name holds.
        ("`@a_b_.c` [@d_e_.f](https://example.com) me@g_h_.i", []),
        ("x-@ann.com._b_ and (-@cy.org._x_), me_@ann.com._x_", []),
        ("@" + "a._" * 43 + "a", []),  # longer than any username, though "_" would cut it
    ],
)
def test_mentions_in_prose(text: str, expected: list[str]) -> None:
    assert mentioned_usernames(text) == expected


#: Names whose "_" runs stand beside the punctuation that lets CommonMark read
#: them as emphasis, and the other delimiter runs a name may hold.
delimited_names = st.builds(
    lambda first, middle, last: first + middle + last,
    st.sampled_from("a0Ö"),
    st.lists(
        st.sampled_from(("_", "__", "___", ".", "-", "+", "@", "x", "_x_", ".__x__.", "é")),
        max_size=8,
    ).map("".join),
    st.sampled_from("b9ß"),
)
#: Emphasis and other delimiter runs around and beside a mention.
AROUND = (
    "for @{}.",
    "_@{}_",
    "*@{}*",
    "**@{}**",
    "__@{}__",
    "~~@{}~~",
    "_see_@{}",
    "*a* @{}, _b_ *c*",
    "_@{}_ and *@{}*",
)


@given(delimited_names, st.sampled_from(AROUND))
@example("0._0_.0", "for @{}.")
@example("a_.b", "_@{}_ and *@{}*")
def test_a_name_with_delimiter_runs_is_one_mention_and_shown_whole(name: str, around: str) -> None:
    """Emphasis never cuts a name: it is mentioned whole and the page shows it whole."""
    assert is_valid_username(name)
    text = around.format(*[name] * around.count("{}"))
    assert mentioned_usernames(text) == [username_key(name)]
    assert "@" + html.escape(name, quote=False) in markdown_parser().render(text)


def _mentions_in_rendered_prose(text: str) -> set[str]:
    """What a reader of the rendered page sees as ``@name`` prose: outside code and links.

    An independent reading of the same parse, through the HTML (how the web
    linked mentions before): its text between tags, unescaped.
    """
    keys: set[str] = set()
    inside = 0
    for part in re.split(r"(<[^>]*>)", markdown_parser().render(text)):
        if part.startswith("<"):
            tag = part.lower()
            if tag.startswith(("<code", "<pre", "<a ")):
                inside += 1
            elif tag.startswith(("</code", "</pre", "</a")):
                inside -= 1
        elif not inside:
            keys.update(m.key for m in find_mentions(html.unescape(part)))
    return keys


@given(markdown_texts())
def test_the_mentions_are_the_ones_in_the_rendered_prose(text: str) -> None:
    """Every name the page shows as a mention in prose is extracted, and nothing else is."""
    assert set(mentioned_usernames(text)) == _mentions_in_rendered_prose(text)


def test_mention_search_takes_any_spelling_of_one_name() -> None:
    values = []
    for spelling in ("Ölaf", "ölaf", "O\u0308laf", "ÖLAF"):
        query = parse_query(f"mention:{spelling}")
        structured = to_structured(query, me=None, users={spelling: "u-1"}, today=date(2026, 1, 1))
        assert structured.filter is not None
        assert structured.filter.term is not None
        values += [v.text for v in structured.filter.term.values]
    assert values == ["ölaf"] * 4


def test_a_remembered_answer_is_the_answer_and_the_memory_is_bounded() -> None:
    """``mentioned_usernames`` remembers each text's mentions by digest, at most TEXT_CACHE_SIZE."""
    text = "_@bob_ and https://example.com/@ann, @cy"
    assert mentioned_usernames(text) == ["bob", "cy"]
    assert mentioned_usernames(text) == ["bob", "cy"]  # remembered
    assert mentioned_usernames("@dee", text, "@bob") == ["dee", "bob", "cy"]
    for i in range(mentions.TEXT_CACHE_SIZE + 10):
        assert mentioned_usernames(f"@u{i}") == [f"u{i}"]
    assert len(mentions._text_cache) == mentions.TEXT_CACHE_SIZE
    assert mentioned_usernames(text) == ["bob", "cy"]  # forgotten, read again


def test_mentions_are_given_back_as_their_first_mention_wrote_them() -> None:
    """By key, the first spelling in prose: a code span's is no mention, a later one is not kept."""
    written = mentions_as_written("`@CAROL` and @Carol, then @carol", "@Ölaf @DEE")
    assert written == {"carol": "Carol", "ölaf": "Ölaf", "dee": "DEE"}
    assert list(written) == mentioned_usernames("`@CAROL` and @Carol, then @carol", "@Ölaf @DEE")
    assert mentions_as_written("no one", "") == {}
