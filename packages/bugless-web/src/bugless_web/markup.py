"""Comments and descriptions: Markdown in, HTML that cannot run anything out.

What the renderer adds to CommonMark (with tables and strikethrough): bare
``http(s)://`` URLs and e-mail addresses become links (linkify-it-py; a bare
``setup.py`` stays text, since ``.py`` is a country's domain too); ``#123``,
``b/123`` and ``issue 123`` link to the issue; ``@name`` links to the person
when :mod:`bugless_core.mentions` finds it in the parse's prose (the very
mentions the Model stores and the notifier notifies: not in code or links);
``- [ ]`` / ``- [x]`` items are read-only checkboxes (mdit-py-plugins' task
lists). The parser is :func:`bugless_core.markdown.markdown_parser`, the one
mentions are read with. The preview tab of every text box posts to
``/preview``, which renders through this same function.

A page shows a text with :func:`render_text`, which keeps the link of each
mention of a person who exists and shows any other ``@name`` as a muted
``<span class="mention unknown" title="no such user">``: a link there would
lead to a 404. Who exists is the page's to say (one look-up per page, see
:func:`bugless_web.timeline.names_for`); :func:`render_markdown` stays a pure
function of the text, and so memoised.

Two independent walls, so a bug in one is not an XSS: markdown-it-py with raw
HTML disabled (a ``<script>`` in a comment is text), then nh3 (ammonia) with an
allow-list of tags, attributes and URL schemes, which strips event handlers and
``javascript:`` URLs whatever produced them. The Content-Security-Policy (no
inline scripts) is the third.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Container
from urllib.parse import quote, unquote

import nh3
from markdown_it.token import Token
from markupsafe import Markup

from bugless_core.issue_references import ISSUE_REFERENCE
from bugless_core.markdown import markdown_parser
from bugless_core.mentions import Mention, prose_mentions
from bugless_core.usernames import username_key

_ALLOWED_TAGS = frozenset(
    {
        "a", "p", "br", "hr", "em", "strong", "del", "s", "code", "pre", "blockquote",
        "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6",
        "table", "thead", "tbody", "tr", "th", "td", "img", "input",
    }
)  # fmt: skip
_ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "ol": {"start"},
    "th": {"align"},
    "td": {"align"},
    "code": {"class"},
    "input": {"checked"},
}
#: Task-list markup keeps only its own classes.
_ALLOWED_CLASSES = {
    "a": {"mention"},
    "ul": {"contains-task-list"},
    "li": {"task-list-item"},
    "input": {"task-list-item-checkbox"},
}
#: Whatever produced an ``<input>``, it leaves as a disabled checkbox.
_FORCED_ATTRIBUTES = {"input": {"type": "checkbox", "disabled": "disabled"}}
_URL_SCHEMES = frozenset({"http", "https", "mailto"})

_markdown = markdown_parser()


#: Comments rendered and kept in memory. Rendering is a pure function of the
#: text, and an issue page re-renders every comment on every view (profiled at
#: over a quarter of the web tier's CPU), so repeated views cost a dict look-up.
RENDER_CACHE_SIZE = 8192
#: Most characters (source and HTML) kept at once, whatever the count: 8,192
#: comments of up to 64 Ki characters each (and previews of any text typed)
#: could otherwise hold far more than the web tier's whole memory budget
#: (100 MB per process, issue 17).
RENDER_CACHE_CHARS = 8 * 1024 * 1024

_rendered: OrderedDict[str, Markup] = OrderedDict()
_rendered_chars = 0
_rendered_lock = threading.Lock()


def render_markdown(source: str) -> Markup:
    """Sanitised HTML for a comment written in Markdown.

    Safe to put in a page as is: raw HTML in the source is escaped by the
    Markdown renderer and anything that slips through is removed by nh3. The
    result depends on ``source`` alone, so it is memoised (LRU, bounded by
    :data:`RENDER_CACHE_SIZE` entries and :data:`RENDER_CACHE_CHARS`).
    """
    global _rendered_chars  # noqa: PLW0603 - the one cache of this module
    with _rendered_lock:
        cached = _rendered.get(source)
        if cached is not None:
            _rendered.move_to_end(source)
            return cached
    html = _render(source)
    with _rendered_lock:
        if source not in _rendered:
            _rendered[source] = html
            _rendered_chars += len(source) + len(html)
        while len(_rendered) > RENDER_CACHE_SIZE or (
            _rendered_chars > RENDER_CACHE_CHARS and len(_rendered) > 1
        ):
            forgotten, forgotten_html = _rendered.popitem(last=False)
            _rendered_chars -= len(forgotten) + len(forgotten_html)
    return html


#: A mention's link as :func:`_mention_links` writes it and nh3 leaves it
#: (a hand-written ``<a class="mention">`` never gets here: raw HTML is text).
_MENTION_LINK = re.compile(r'<a class="mention" href="/users/([^"]*)"[^>]*>([^<]*)</a>')
#: What an ``@name`` nobody goes by reads as (its text, escaped already).
_UNKNOWN_MENTION = '<span class="mention unknown" title="no such user">{}</span>'


def render_text(source: str, people: Container[str]) -> Markup:
    """:func:`render_markdown`, with only the mentions of existing people linked.

    Args:
        source: The Markdown text.
        people: The :func:`~bugless_core.usernames.username_key` of every
            mentioned name that is a user (others may be there too). A
            mention of any other name is shown as muted text titled "no such
            user", never as a link to a page that does not exist.
    """
    html = render_markdown(source)
    if 'class="mention"' not in html:
        return html

    def shown(link: re.Match[str]) -> str:
        if username_key(unquote(link.group(1))) in people:
            return link.group(0)
        return _UNKNOWN_MENTION.format(link.group(2))

    return Markup(_MENTION_LINK.sub(shown, html))


def render_cache_size() -> tuple[int, int]:
    """Comments kept and characters kept (source and HTML), for tests and metrics."""
    with _rendered_lock:
        return len(_rendered), _rendered_chars


def _render(source: str) -> Markup:
    if not source.strip():
        return Markup("")
    tokens = _markdown.parse(source)
    _link_mentions(tokens)
    html = _link_references(_markdown.renderer.render(tokens, _markdown.options, {}))
    cleaned = nh3.clean(
        html,
        tags=set(_ALLOWED_TAGS),
        attributes={k: set(v) for k, v in _ALLOWED_ATTRIBUTES.items()},
        allowed_classes={k: set(v) for k, v in _ALLOWED_CLASSES.items()},
        set_tag_attribute_values={k: dict(v) for k, v in _FORCED_ATTRIBUTES.items()},
        url_schemes=set(_URL_SCHEMES),
        link_rel="noopener noreferrer nofollow ugc",
        strip_comments=True,
    )
    return Markup(cleaned)


def _link_mentions(tokens: list[Token]) -> None:
    """Put a link to each mentioned person's page in place of their ``@name`` in ``tokens``.

    The mentions are :func:`bugless_core.mentions.prose_mentions` of the
    parse, so the web links exactly what the Model stores for ``mention:``
    and the notifier notifies.
    """
    found = {id(token): mentions for token, mentions in prose_mentions(tokens)}
    if not found:
        return
    for token in tokens:
        if token.type != "inline" or not token.children:
            continue
        children: list[Token] = []
        for child in token.children:
            mentions = found.get(id(child))
            children += [child] if mentions is None else _mention_links(child, mentions)
        token.children = children


def _mention_links(text: Token, mentions: list[Mention]) -> list[Token]:
    """``text`` split into its plain runs and a link per mention.

    The name is the one written, composed (NFC) and percent-encoded in the
    link ("@O\u0308laf" links ``/users/%C3%96laf``): the person's page finds
    them by ``username_key``, as the notifier does.
    """
    content = text.content
    out: list[Token] = []
    done = 0
    for mention in mentions:
        if mention.start > done:
            out.append(_text(content[done : mention.start]))
        link = Token("link_open", "a", 1)
        link.attrSet("class", "mention")
        link.attrSet(
            "href", "/users/" + quote(unicodedata.normalize("NFC", mention.name), safe="@+")
        )
        out += (link, _text(content[mention.start : mention.end]), Token("link_close", "a", -1))
        done = mention.end
    if done < len(content):
        out.append(_text(content[done:]))
    return out


def _text(content: str) -> Token:
    token = Token("text", "", 0)
    token.content = content
    return token


def _link_references(html: str) -> str:
    """Link ``#42`` / ``b/42`` outside tags, code and links (text only)."""
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
            parts[index] = ISSUE_REFERENCE.sub(r'<a href="/issues/\1">\g<0></a>', part)
    return "".join(parts)
