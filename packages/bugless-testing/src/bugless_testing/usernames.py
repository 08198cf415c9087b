"""Hypothesis strategies over the usernames bugless accepts (``bugless_core.usernames``).

Drawn from the grammar's own alphabet, in every script: a letter or digit
first, then letters, digits, combining marks and ``. _ @ + -``. Mentionable
names end with a letter, digit or mark (a mention stops at the last one:
"@ann." mentions ``ann``); :func:`usernames` draws those, as written
(mixed case, sometimes decomposed), within the length limit in NFC.
"""

from __future__ import annotations

import unicodedata

from hypothesis import strategies as st

from bugless_core.usernames import USERNAME_MAX_LENGTH, USERNAME_PUNCTUATION, is_combining_mark

#: Letters and digits of any script (what ``str.isalnum`` accepts).
letters_or_digits = st.characters(categories=("L", "N")).filter(str.isalnum)
#: Combining marks (category M).
marks = st.characters(categories=("Mn", "Mc", "Me"))
#: Any character a username may hold after its first.
username_characters = st.one_of(letters_or_digits, marks, st.sampled_from(USERNAME_PUNCTUATION))


def _fits(name: str) -> bool:
    return len(unicodedata.normalize("NFC", name)) <= USERNAME_MAX_LENGTH


@st.composite
def _mentionable(draw: st.DrawFn, max_inner: int) -> str:
    first = draw(letters_or_digits)
    inner = draw(st.text(username_characters, max_size=max_inner))
    last = draw(st.one_of(st.just(""), letters_or_digits, marks))
    name = first + inner + last
    if inner and not last and not (name[-1].isalnum() or is_combining_mark(name[-1])):
        name += draw(letters_or_digits)
    if draw(st.booleans()):
        name = unicodedata.normalize("NFD", name)
    return name


def usernames(max_inner: int = 24) -> st.SearchStrategy[str]:
    """Mentionable usernames as a person may write them (any case, NFC or NFD)."""
    return _mentionable(max_inner).filter(_fits)


#: What Markdown around a mention is made of: emphasis, code, links and bare
#: URLs, escapes and entities, block starts, and the punctuation a mention
#: stops at or may not follow.
MARKDOWN_PIECES = (
    *("_", "*", "**", "~~", "`", "```\n", "\n", "\n\n", "    ", "> ", "- ", "1. ", "# "),
    *("[", "]", "(", ")", "](https://example.com/@x)", "![", "<", ">", "\\", "&amp;"),
    *("&#64;", "!", "- [ ] ", "|", "\n|---|\n", " ", ".", ",", ":", "@", "@@", "e.g."),
    *("https://example.com/@", "mail@", "ann@corp.example"),
)


@st.composite
def markdown_texts(draw: st.DrawFn) -> str:
    """Comments that mix mentions, other ``@`` and Markdown syntax.

    For the tests that every reader of a comment (the web's links, the
    Model's ``mention:`` rows, the notifier) finds the same mentions in it.
    """
    pieces = st.one_of(
        st.sampled_from(MARKDOWN_PIECES),
        usernames(max_inner=6).map(lambda name: "@" + name),
        usernames(max_inner=6),
        st.text(max_size=3),
    )
    return "".join(draw(st.lists(pieces, max_size=24)))
