"""The one Markdown parse is linkify-it's, with its quick "no link" answers (QuickLinkify).

:class:`bugless_core.markdown.QuickLinkify` answers linkify-it's pretest
and test with "no link" for text without ``:``, ``//`` or an e-mail name's
last character before ``@``. These tests hold that to linkify-it itself:
every generated comment parses to the same tokens (and so the same
rendering and mentions) as with a stock ``LinkifyIt`` (in the same
configuration, mention units included), and the shortcut's
premises (the schemas, the e-mail name's characters, no fuzzy links) are
checked against the library's own patterns.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from linkify_it import LinkifyIt
from markdown_it import MarkdownIt
from markdown_it.token import Token
from mdit_py_plugins.tasklists import tasklists_plugin

from bugless_core.markdown import QuickLinkify, markdown_parser, mention_units
from bugless_testing.usernames import MARKDOWN_PIECES, usernames

#: Pieces of links and near-links: schemas (in any case), e-mail addresses
#: and the characters around them, the Kelvin sign and long s (which match
#: "k" and "s" ignoring case), escapes and entities of ``:`` and ``@``.
LINK_PIECES = (
    *("http:", "HTTPS://", "ftp://x.org", "mailto:", "//", "://", "www.example.com", "example.com"),
    *("me@ann.com", "x.y@corp.example.org", "-@a.net", '"q"@b.com', ";@c.org"),
    *("\u212a@k.com", "http\u017f://s.com", "@", "bob", ".com", "\\:", "&#58;", "\\@"),
    *("&#64;", "&#x2F;", "(", ")", "<", ">", "*", "_", "`", "~~", "|", "\n|---|\n", " ", "\n"),
)


def _stock_parser() -> MarkdownIt:
    """:func:`markdown_parser`'s configuration with linkify-it's own ``LinkifyIt``."""
    markdown = MarkdownIt("commonmark", {"html": False, "linkify": True, "typographer": False})
    markdown.enable(["table", "strikethrough", "linkify"])
    markdown.linkify = LinkifyIt()
    markdown.linkify.set({"fuzzy_link": False})
    markdown.use(tasklists_plugin, enabled=False)
    markdown.use(mention_units)
    return markdown


_STOCK = _stock_parser()


def _tokens(tokens: list[Token]) -> list[dict[str, Any]]:
    return [dict(token.as_dict()) for token in tokens]


linkable_texts = st.lists(
    st.one_of(
        st.sampled_from(LINK_PIECES),
        st.sampled_from(MARKDOWN_PIECES),
        usernames(max_inner=4),
        st.text(max_size=3),
    ),
    max_size=24,
).map("".join)


@given(linkable_texts)
@example("see https://example.com/@ann and *me@ann.com* or me@ann.com@bob")
@example("ftp://x.org/@bob `http://a.example` [x](http://b.example) www.example.com @ann")
@example("\u212a@k.com @bob, http\u017f://s.com/@cy, http\\://d.example/@dee")
@example("| a | b |\n|---|---|\n| x\\|me@ann.com | https://e.example/@f |\n\n- [ ] //g.example")
@example("-@a.net0._0_ a_@b.com._c_ _x a_@b.com_")
def test_the_parse_is_the_one_with_linkify_its_own_linkifier(text: str) -> None:
    assert _tokens(markdown_parser().parse(text)) == _tokens(_STOCK.parse(text))


def test_every_link_schema_holds_a_colon_or_two_slashes_and_fuzzy_links_are_off() -> None:
    linkify = markdown_parser().linkify
    assert isinstance(linkify, QuickLinkify)
    assert not linkify._opts["fuzzy_link"]
    assert linkify._schemas
    for schema in linkify._schemas:
        assert ":" in schema or "//" in schema, schema


def test_only_the_name_end_characters_end_an_e_mail_address() -> None:
    """Over every code point: linkify-it finds an address ``c@ann.com`` only for those ``c``."""
    linkify = markdown_parser().linkify
    assert isinstance(linkify, QuickLinkify)
    email = re.compile(linkify.re["email_fuzzy"], re.IGNORECASE)
    name_end = re.compile(r'[\-;:&=+$,".a-zA-Z0-9_]@', re.IGNORECASE)
    ends = [
        chr(c)
        for c in range(sys.maxunicode + 1)
        if not 0xD800 <= c <= 0xDFFF and email.search(chr(c) + "@ann.com")
    ]
    assert "a" in ends
    assert "\u212a" in ends  # the Kelvin sign: "k" ignoring case
    for end in ends:
        assert name_end.search(end + "@"), hex(ord(end))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ask @bob", False),
        ("ask @bob, (@ann) and\n@cy", False),
        ("see https://example.com", True),
        ("//example.com", True),
        ("me@ann.com", True),
        ("\u212a@k.com", True),
        ('"q"@b.com', True),
    ],
)
def test_quick_answers_are_linkify_its(text: str, expected: bool) -> None:
    linkify = markdown_parser().linkify
    assert isinstance(linkify, QuickLinkify)
    assert linkify.pretest(text) is expected
    assert linkify.test(text) is expected
    assert LinkifyIt().set({"fuzzy_link": False}).test(text) is expected
