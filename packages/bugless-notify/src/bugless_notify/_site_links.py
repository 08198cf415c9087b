"""Links a comment makes to the site's own pages, made absolute for a mail.

The web writes them relative to itself; a mail client has nothing to
resolve them against. Read with the Markdown parse the web renders comments
with, so code (blocks and spans) stays as it was typed.
"""

from __future__ import annotations

import functools
import re

from bugless_core.markdown import markdown_parser

#: A backslash escape (``\\``, ``\```, ``\]``: the character after it is
#: text; read as one, so a backtick after an escaped backslash opens code,
#: as CommonMark reads it), or inline code (a run of backticks to
#: the same run within a paragraph), both left as written; else a Markdown
#: link's target on this site (``](/attachments/3/x.log``), not one on
#: another (``](//host``).
_SITE_LINK = re.compile(
    r"(\\[\s\S]|(?<!`)(`+)(?!`)(?:(?!\n[ \t]*\n)[\s\S])*?(?<!`)\2(?!`))|\]\((/(?!/))"
)
#: A line's end as markdown-it counts lines (``map``).
_LINE_END = re.compile(r"\r\n?|\n")


@functools.lru_cache(maxsize=256)
def _code_blocks(text: str) -> tuple[tuple[int, int], ...]:
    """The lines ``[start, end)`` of ``text``'s fenced and indented code blocks.

    Read by the parse the web renders comments with, so what the issue
    page shows as code (a ```` ``` ```` or ``~~~`` fence, in a list or a
    quote too, or four spaces in) is what a mail leaves as typed. Cached: a
    change's comment is rendered once per recipient and form.
    """
    return tuple(
        (token.map[0], token.map[1])
        for token in markdown_parser().parse(text)
        if token.type in ("fence", "code_block") and token.map
    )


def with_site_links(text: str, base: str) -> str:
    """``text`` with its links to the site's own pages made absolute under ``base``.

    The web writes links into comments relative to itself (a dropped file is
    ``[x.log](/attachments/3/x.log)``, an import's reference
    ``[#1](/imported?id=trac%3A1)``): the page resolves them, a mail client
    has nothing to resolve them against. Code (blocks and spans) is left as
    it was typed: a ``](/path`` there is text the author wrote, not a link.
    """

    def absolute(match: re.Match[str]) -> str:
        return match.group(1) or f"]({base}/"

    blocks = _code_blocks(text)
    if not blocks:
        return _SITE_LINK.sub(absolute, text)
    ends = [m.end() for m in _LINE_END.finditer(text)]
    starts = [0, *ends]

    def offset(line: int) -> int:
        return starts[line] if line < len(starts) else len(text)

    out: list[str] = []
    at = 0
    for first, end in blocks:
        out.append(_SITE_LINK.sub(absolute, text[at : offset(first)]))
        out.append(text[offset(first) : offset(end)])
        at = offset(end)
    out.append(_SITE_LINK.sub(absolute, text[at:]))
    return "".join(out)
