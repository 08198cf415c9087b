"""Comments and descriptions: Markdown in, HTML that cannot run anything out.

Two independent walls, so a bug in one is not an XSS: markdown-it-py with raw
HTML disabled (a ``<script>`` in a comment is text), then nh3 (ammonia) with an
allow-list of tags, attributes and URL schemes, which strips event handlers and
``javascript:`` URLs whatever produced them. The Content-Security-Policy (no
inline scripts) is the third.
"""

from __future__ import annotations

import functools
import re

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup

_ALLOWED_TAGS = frozenset(
    {
        "a", "p", "br", "hr", "em", "strong", "del", "s", "code", "pre", "blockquote",
        "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6",
        "table", "thead", "tbody", "tr", "th", "td", "img",
    }
)  # fmt: skip
_ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "ol": {"start"},
    "th": {"align"},
    "td": {"align"},
    "code": {"class"},
}
_URL_SCHEMES = frozenset({"http", "https", "mailto"})
#: ``issue 42`` / ``b/42`` in prose become links to the issue page.
_ISSUE_REFERENCE = re.compile(r"(?<![\w/])(?:b/|issue\s+#?)(\d{1,19})\b", re.IGNORECASE)

_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
_markdown.enable(["table", "strikethrough"])


#: Comments rendered and kept in memory. Rendering is a pure function of the
#: text, and an issue page re-renders every comment on every view (profiled at
#: over a quarter of the web tier's CPU), so repeated views cost a dict look-up.
RENDER_CACHE_SIZE = 8192


@functools.lru_cache(maxsize=RENDER_CACHE_SIZE)
def render_markdown(source: str) -> Markup:
    """Sanitised HTML for a comment written in Markdown.

    Safe to put in a page as is: raw HTML in the source is escaped by the
    Markdown renderer and anything that slips through is removed by nh3. The
    result depends on ``source`` alone, so it is memoised (bounded, LRU).
    """
    if not source.strip():
        return Markup("")
    html = _markdown.render(source)
    html = _link_issue_references(html)
    cleaned = nh3.clean(
        html,
        tags=set(_ALLOWED_TAGS),
        attributes={k: set(v) for k, v in _ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(_URL_SCHEMES),
        link_rel="noopener noreferrer nofollow ugc",
        strip_comments=True,
    )
    return Markup(cleaned)


def _link_issue_references(html: str) -> str:
    """Turn ``b/42`` into a link outside tags and code (text nodes only)."""
    parts = re.split(r"(<[^>]*>)", html)
    inside_code = 0
    inside_link = 0
    for index, part in enumerate(parts):
        if part.startswith("<"):
            tag = part.lower()
            if tag.startswith(("<code", "<pre")):
                inside_code += 1
            elif tag.startswith(("</code", "</pre")):
                inside_code = max(0, inside_code - 1)
            elif tag.startswith("<a "):
                inside_link += 1
            elif tag.startswith("</a"):
                inside_link = max(0, inside_link - 1)
            continue
        if not inside_code and not inside_link:
            parts[index] = _ISSUE_REFERENCE.sub(r'<a href="/issues/\1">\g<0></a>', part)
    return "".join(parts)
