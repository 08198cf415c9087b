"""Comments and descriptions: Markdown in, HTML that cannot run anything out.

What the renderer adds to CommonMark (with tables and strikethrough): bare
``http(s)://`` URLs and e-mail addresses become links (linkify-it-py; a bare
``setup.py`` stays text, since ``.py`` is a country's domain too); ``#123``,
``b/123`` and ``issue 123`` link to the issue; ``- [ ]`` / ``- [x]`` items are
read-only checkboxes (mdit-py-plugins' task lists). The preview tab of every
text box posts to ``/preview``, which renders through this same function.

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
from urllib.parse import quote

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup
from mdit_py_plugins.tasklists import tasklists_plugin

from bugless_core.issue_references import ISSUE_REFERENCE
from bugless_core.mentions import find_mentions

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

_markdown = MarkdownIt("commonmark", {"html": False, "linkify": True, "typographer": False})
_markdown.enable(["table", "strikethrough", "linkify"])
if _markdown.linkify is None:  # pragma: no cover - linkify-it-py is a dependency
    msg = "bugless-web needs linkify-it-py (markdown-it-py[linkify]) to link bare URLs"
    raise RuntimeError(msg)
_markdown.linkify.set({"fuzzy_link": False})
_markdown.use(tasklists_plugin, enabled=False)


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


def render_cache_size() -> tuple[int, int]:
    """Comments kept and characters kept (source and HTML), for tests and metrics."""
    with _rendered_lock:
        return len(_rendered), _rendered_chars


def _render(source: str) -> Markup:
    if not source.strip():
        return Markup("")
    html = _markdown.render(source)
    html = _link_references(html)
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


def _link_mentions(text: str) -> str:
    """``@ann`` as a link to ann's page (the grammar of :mod:`bugless_core.mentions`).

    The name is the one written, composed (NFC) and percent-encoded in the
    link ("@O\u0308laf" links ``/users/%C3%96laf``): the person's page finds
    them by ``username_key``, as the notifier does. ``text`` is HTML-escaped
    text, and no username character is one HTML escapes, so the spans the
    grammar finds in it are the ones it finds in the comment.
    """
    out: list[str] = []
    done = 0
    for mention in find_mentions(text):
        href = "/users/" + quote(unicodedata.normalize("NFC", mention.name), safe="@+")
        out += (
            text[done : mention.start],
            f'<a class="mention" href="{href}">{text[mention.start : mention.end]}</a>',
        )
        done = mention.end
    out.append(text[done:])
    return "".join(out)


def _link_references(html: str) -> str:
    """Link ``#42`` / ``b/42`` and ``@username`` outside tags, code and links (text only)."""
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
            linked = ISSUE_REFERENCE.sub(r'<a href="/issues/\1">\g<0></a>', part)
            parts[index] = _link_mentions(linked) if "@" in linked else linked
    return "".join(parts)
