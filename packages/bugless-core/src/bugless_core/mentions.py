r"""``@username`` mentions: the one grammar the web renderer, the notifier and search share.

A mention is ``@`` then a username as :mod:`bugless_core.usernames` defines
one (a letter or digit of any script, then letters, digits, combining marks
and ``. _ @ + -``), up to its last letter, digit or mark, so that "ask
@ann." and "(@ann)" and "@ann," mention ``ann``. The ``@`` must not follow a
letter, digit, mark, ``_``, ``@`` or ``.``, so an e-mail address
(``me@ann.example``) mentions nobody, while ``@ann@corp.example`` mentions
the user of that name (directories hand out e-mail-shaped usernames). A run
longer than :data:`~bugless_core.usernames.USERNAME_MAX_LENGTH` characters
(in NFC) mentions nobody.

Mentions compare by :func:`~bugless_core.usernames.username_key`: "@Ölaf",
"@ölaf" and "@O\u0308laf" (decomposed) all mention the user "Ölaf". The
web links each one to the person's page; the notifier notifies the people
named (resolved through the Authenticator, unknown names ignored); the Model
keeps the keys of an issue's mentions for ``mention:`` searches.

Texts are Markdown, and the grammar reads the prose of their one parse
(:mod:`bugless_core.markdown`), the parse the web renders: a mention is
what the web links, in every service. So ``_@ann_`` (emphasis) and
``**@ann**`` mention ann, while ```@ann``` (a code span), a fenced or
indented block, a link's text or URL (``https://example.com/@ann``) and an
image's description mention nobody. Titles are read the same way. A name
is one unit of that parse (:func:`bugless_core.markdown.mention_units`):
emphasis never cuts it, so ``@0._0_.0`` mentions ``0._0_.0`` (CommonMark
alone reads its ``_0_`` as emphasis), while ``_@a_b_.c_`` is emphasis
around the mention of ``a_b_.c``.
"""

from __future__ import annotations

import functools
import hashlib
import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bugless_core.usernames import USERNAME_MAX_LENGTH, username_classes, username_key

if TYPE_CHECKING:
    from markdown_it.token import Token


@dataclass(frozen=True)
class Mention:
    """One ``@name`` in a text.

    Attributes:
        start: Where the ``@`` is.
        end: Just after the name.
        name: The name as written.
        key: Its :func:`~bugless_core.usernames.username_key`.
    """

    start: int
    end: int
    name: str
    key: str


def _name_grammar() -> str:
    """A mentioned name: a username's first character, up to its last letter, digit or mark."""
    c = username_classes()
    return f"{c.first}(?:{c.inner}*(?:{c.first}|{c.mark}))?"


@functools.cache
def mention_pattern() -> re.Pattern[str]:
    """The compiled grammar; group 1 is the name (built on first use, with the classes).

    The ``@`` comes first and the look-behind after it (``@(?<!X@)``, not
    ``(?<!X)@``): ``re`` then skips from ``@`` to ``@`` instead of testing
    the look-behind's class, hundreds of ranges, at every character (a 4 KiB
    comment with five mentions: about 30 µs a call instead of 1.1 ms).
    """
    c = username_classes()
    return re.compile(f"@(?<![\\w@.{c.marks}]@)({_name_grammar()})")


@functools.cache
def mention_name_pattern() -> re.Pattern[str]:
    """The name of :func:`mention_pattern` alone, without its ``@`` and look-behind.

    For the Markdown reading (:mod:`bugless_core.markdown`), which keeps a
    name whole where what stands before the ``@`` is decided later: an
    emphasis delimiter (``_@ann_``), gone from the text if it pairs up.
    """
    return re.compile(_name_grammar())


def find_mentions(text: str) -> Iterator[Mention]:
    """The mentions in one run of plain text, in order (the same name as often as written).

    ``text`` is prose already: for a comment, a description or a title, which
    are Markdown, use :func:`prose_mentions` or :func:`mentioned_usernames`.
    """
    if "@" not in text:
        return
    for match in mention_pattern().finditer(text):
        name = match.group(1)
        if len(name) > USERNAME_MAX_LENGTH and (
            name.isascii() or len(unicodedata.normalize("NFC", name)) > USERNAME_MAX_LENGTH
        ):
            continue
        yield Mention(match.start(), match.end(), name, username_key(name))


def prose_mentions(tokens: Sequence[Token]) -> Iterator[tuple[Token, list[Mention]]]:
    """Each prose text token of a Markdown parse that mentions someone, with its mentions.

    ``tokens`` come from :func:`bugless_core.markdown.markdown_parser`; the
    mentions' positions are in the token's ``content``. The web links these
    and only these (``bugless_web.markup``).
    """
    from bugless_core.markdown import prose_text  # noqa: PLC0415 - markdown-it, on first use

    for token in prose_text(tokens):
        if "@" in token.content:
            found = list(find_mentions(token.content))
            if found:
                yield token, found


def _may_mention(text: str) -> bool:
    """Whether the Markdown reading of ``text`` can find a mention (cheap, never wrongly false).

    Markdown only takes characters away from the raw text (delimiters,
    escapes) or makes one of an entity, so a mention of the parse is an
    ``@`` the raw grammar matches too (without its length bound), unless an
    entity wrote it (``&#64;``) or a ``_`` delimiter stood before it
    (``_@ann_``, whose raw ``@`` follows a word character).
    """
    if "&" in text or "_@" in text:
        return True
    return "@" in text and mention_pattern().search(text) is not None


#: How many texts' mentions :func:`mentioned_usernames` remembers (by digest:
#: a few hundred bytes each, whatever the text's size).
TEXT_CACHE_SIZE = 4096
_text_cache: OrderedDict[bytes, tuple[str, ...]] = OrderedDict()
_text_cache_lock = threading.Lock()


def _text_mentions(text: str) -> tuple[str, ...]:
    """The keys ``text`` (Markdown) mentions, first mention first, each once; remembered.

    The Model reads a text again when it is edited, redacted or a title
    changes (``names_may_go``, ``title_change_only_adds``, ``sync``), and
    the notifier reads the texts of every change it sends: the answer is
    kept by the text's BLAKE2b digest (128 bits: two texts sharing one is
    not a practical event), least recently used first out. A digest costs
    ~1 µs for a 500-character comment, against ~40 µs for its parse.
    """
    from bugless_core.markdown import markdown_parser  # noqa: PLC0415 - markdown-it, on first use

    key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    with _text_cache_lock:
        found = _text_cache.get(key)
        if found is not None:
            _text_cache.move_to_end(key)
            return found
    seen: dict[str, None] = {}
    for _, mentions in prose_mentions(markdown_parser().parse(text)):
        for mention in mentions:
            seen.setdefault(mention.key, None)
    found = tuple(seen)
    with _text_cache_lock:
        _text_cache[key] = found
        if len(_text_cache) > TEXT_CACHE_SIZE:
            _text_cache.popitem(last=False)
    return found


def mentioned_usernames(*texts: str) -> list[str]:
    """The keys of the usernames mentioned in ``texts`` (Markdown), first mention first, each once.

    A text is parsed only when it may hold a mention (:func:`_may_mention`):
    most comments cost a substring test or a search of the raw text. The
    parse of one that may costs ~40 µs for a 500-character comment without
    a link (linkify's patterns run only where a link can be:
    :class:`bugless_core.markdown.QuickLinkify`), and its answer is
    remembered (:func:`_text_mentions`).
    """
    seen: dict[str, None] = {}
    for text in texts:
        if _may_mention(text):
            for key in _text_mentions(text):
                seen.setdefault(key, None)
    return list(seen)


def mentions_as_written(*texts: str) -> dict[str, str]:
    """Each key ``texts`` (Markdown) mention, to the name as its first mention wrote it.

    For what quotes mentions back to their writer: "@Carol" is warned of as
    "Carol", not as the key "carol" every comparison uses. Read from the
    same parse as :func:`mentioned_usernames` (a code span's ``@Carol`` is no
    mention), but not remembered: a caller asks for the few texts it just
    saved, once.
    """
    from bugless_core.markdown import markdown_parser  # noqa: PLC0415 - markdown-it, on first use

    written: dict[str, str] = {}
    for text in texts:
        if _may_mention(text):
            for _, mentions in prose_mentions(markdown_parser().parse(text)):
                for mention in mentions:
                    written.setdefault(mention.key, mention.name)
    return written
