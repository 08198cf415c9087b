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

A mentioned name is one unit of that reading (:func:`mention_units`): CommonMark
would read the ``_0_`` of ``@0._0_.0`` (an ``_`` beside punctuation) as
emphasis and cut the name in three, so the user ``0._0_.0`` could not be
mentioned. The parser reads ``@`` and the name as text before emphasis can
see its ``_``; everything else is CommonMark's reading.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence

from linkify_it import LinkifyIt
from markdown_it import MarkdownIt
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token
from mdit_py_plugins.tasklists import tasklists_plugin

from bugless_core.mentions import mention_name_pattern, mention_pattern

__all__ = ["QuickLinkify", "markdown_parser", "mention_units", "prose_text"]


#: A character that can end an e-mail address's name part just before its ``@``:
#: linkify-it's ``src_email_name`` (``linkify_it.ucre``), a class it matches
#: ignoring case, as this does (so "K", the Kelvin sign, counts as ``k``).
_EMAIL_NAME_END = re.compile(r'[\-;:&=+$,".a-zA-Z0-9_]@', re.IGNORECASE)


class QuickLinkify(LinkifyIt):  # type: ignore[misc] # linkify-it-py has no type hints
    """linkify-it answering "no link" at once for text that cannot hold one.

    markdown-it's linkify pass runs linkify-it's pretest on every inline run
    and its test on each text token of a run that passes (any ``@`` does):
    several large Unicode patterns, ~0.24 ms of a 500-character comment's
    ~0.27 ms parse. Without fuzzy links (:func:`markdown_parser`'s
    setting), a link is a schema's, and every schema holds ``:`` or ``//``
    (``http:``, ``https:``, ``ftp:``, ``mailto:``, ``//``), or an e-mail
    address, whose name ends with a character of :data:`_EMAIL_NAME_END`
    just before its ``@``. A text token is a run of its inline text's
    characters (escapes and entities are tokens of their own then), so text
    with none of these has no link and holds no token with one: the answer
    is linkify-it's, found in about a microsecond. Other text gets
    linkify-it's own pretest and test.
    """

    def _cannot_link(self, text: str) -> bool:
        """Whether ``text`` can hold no link (cheap; never wrongly true)."""
        return (
            ":" not in text
            and "//" not in text
            and not self._opts.get("fuzzy_link")
            and _EMAIL_NAME_END.search(text) is None
        )

    def pretest(self, text: str) -> bool:
        """Whether ``text`` may hold a link: a quick answer that may be wrongly yes, never no.

        That is all markdown-it asks of a pretest (it tests each text token
        of a run that passes); linkify-it's own is one large pattern over
        the whole run, ~0.1 ms for a 500-character comment with a URL.
        """
        return not self._cannot_link(text)

    def test(self, text: str) -> bool:
        """Whether ``text`` holds a link (linkify-it's answer)."""
        return not self._cannot_link(text) and bool(super().test(text))


def _after_emphasis_underscore(state: StateInline) -> bool:
    """Whether an ``_`` run that may open or close emphasis was the last thing read.

    If it pairs up, it leaves the text and the ``@`` after it starts a
    run of prose (``_@ann_`` mentions ann); if not, it stays text before the
    ``@`` and the grammar's look-behind refuses the mention (``_@ann``).
    Which one is known only once the inline run is read, so the name is
    kept whole for either answer.
    """
    if state.pending or not state.delimiters:
        return False
    last = state.delimiters[-1]
    return (
        last.marker == ord("_")
        and last.token == len(state.tokens) - 1
        and (last.open or last.close)
    )


def _mention_unit(state: StateInline, silent: bool) -> bool:
    """Inline rule: ``@`` and a username as one run of text, so emphasis cannot split it.

    Where :func:`~bugless_core.mentions.mention_pattern` matches at the
    ``@`` (so not in an e-mail address's ``me@ann``), or the ``@`` follows
    an ``_`` delimiter (:func:`_after_emphasis_underscore`), the name goes
    to the pending text as the text rule would put it, except that its
    ``_`` are never delimiters: ``@0._0_.0`` stays one name, ``_@a_b_.c_``
    is emphasis around the mention of ``a_b_.c``. What is a mention is
    still decided on the parse's text (:func:`bugless_core.mentions.prose_mentions`),
    so code, links (linkify reads the same text) and the length bound keep
    their say. Only ``_`` runs inside a name change the parse: no other
    rule starts at a username character (``+`` and ``-`` start none here).

    In silent mode (the look-ahead over a link's label) the rule reads
    nothing: a name holds no bracket, backtick or ``<``, so skipping it a
    character at a time ends the label at the same place.
    """
    pos = state.pos
    src = state.src
    if silent or src[pos] != "@":
        return False
    if pos > 0 and src[pos - 1] == "_" and _after_emphasis_underscore(state):
        name = mention_name_pattern().match(src, pos + 1, state.posMax)
        end = None if name is None else name.end()
    else:
        mention = mention_pattern().match(src, pos, state.posMax)
        end = None if mention is None else mention.end()
    if end is None:
        return False
    state.append_pending(src[pos:end])
    state.pos = end
    return True


def mention_units(markdown: MarkdownIt) -> None:
    """markdown-it plugin: read each ``@name`` as one unit (:func:`_mention_unit`).

    Pushed last among the inline rules: no other rule starts at ``@``, so
    it runs only where every other rule declined (an ``@``, or another
    character that starts nothing), at a comparison's cost.
    """
    markdown.inline.ruler.push("mention_unit", _mention_unit)


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
    markdown.linkify = QuickLinkify()
    markdown.linkify.set({"fuzzy_link": False})
    markdown.use(tasklists_plugin, enabled=False)
    markdown.use(mention_units)
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
