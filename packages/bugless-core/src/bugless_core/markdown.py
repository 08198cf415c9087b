"""The one reading of a comment's Markdown: the parse the web renders and mentions are found in.

Descriptions and comments are CommonMark with tables, strikethrough, bare
URLs made links (linkify, not fuzzy: ``setup.py`` stays text) and task-list
items. The web renders them from :func:`markdown_parser`'s parse
(``bugless_web.markup``), and :mod:`bugless_core.mentions` looks for
``@name`` in the same parse's prose (:func:`prose_text`), so what the web
links as a mention is exactly what the Model stores for ``mention:``
searches and the notifier notifies: ``_@ann_`` (emphasis around a mention)
mentions ann, while ```@ann``` (code) and the ``@ann`` of a link's URL do
not.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence

from markdown_it import MarkdownIt
from markdown_it.token import Token
from mdit_py_plugins.tasklists import tasklists_plugin

__all__ = ["markdown_parser", "prose_text"]


@functools.cache
def markdown_parser() -> MarkdownIt:
    """The parser every comment and description is read with (built once per process).

    Raw HTML is off (a ``<script>`` in a comment is text). Parsing is
    reentrant: one parser serves every thread.

    Raises:
        RuntimeError: linkify-it-py (``markdown-it-py[linkify]``) is missing.
    """
    markdown = MarkdownIt("commonmark", {"html": False, "linkify": True, "typographer": False})
    markdown.enable(["table", "strikethrough", "linkify"])
    if markdown.linkify is None:  # pragma: no cover - linkify-it-py is a dependency
        msg = "bugless-core needs linkify-it-py (markdown-it-py[linkify]) to read bare URLs"
        raise RuntimeError(msg)
    markdown.linkify.set({"fuzzy_link": False})
    markdown.use(tasklists_plugin, enabled=False)
    return markdown


def prose_text(tokens: Sequence[Token]) -> Iterator[Token]:
    """The text people read as prose in a parse: each inline ``text`` token outside links.

    Code spans, code blocks and fences are tokens of their own kinds, so they
    are never prose; the text of a link (``[see @ann](url)``, or a bare URL
    linkify found) is skipped, since it is a link already; so is an image's
    description. Each token is one run of text (a line break ends it).
    """
    for token in tokens:
        if token.type != "inline" or not token.children:
            continue
        inside_link = 0
        for child in token.children:
            if child.type == "link_open":
                inside_link += 1
            elif child.type == "link_close":
                inside_link = max(0, inside_link - 1)
            elif child.type == "text" and not inside_link and child.content:
                yield child
