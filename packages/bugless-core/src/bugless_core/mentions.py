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

The grammar reads plain text: a mention in a Markdown code span or fence
counts here (it is notified and found by ``mention:``) although the web
shows it as code, unlinked.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

from bugless_core.usernames import USERNAME_MAX_LENGTH, username_classes, username_key


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


@functools.cache
def mention_pattern() -> re.Pattern[str]:
    """The compiled grammar; group 1 is the name (built on first use, with the classes).

    The ``@`` comes first and the look-behind after it (``@(?<!X@)``, not
    ``(?<!X)@``): ``re`` then skips from ``@`` to ``@`` instead of testing
    the look-behind's class, hundreds of ranges, at every character (a 4 KiB
    comment with five mentions: about 30 µs a call instead of 1.1 ms).
    """
    c = username_classes()
    return re.compile(f"@(?<![\\w@.{c.marks}]@)({c.first}(?:{c.inner}*(?:{c.first}|{c.mark}))?)")


def find_mentions(text: str) -> Iterator[Mention]:
    """The mentions in ``text``, in order (the same name as often as it is written)."""
    if "@" not in text:
        return
    for match in mention_pattern().finditer(text):
        name = match.group(1)
        if len(name) > USERNAME_MAX_LENGTH and (
            name.isascii() or len(unicodedata.normalize("NFC", name)) > USERNAME_MAX_LENGTH
        ):
            continue
        yield Mention(match.start(), match.end(), name, username_key(name))


def mentioned_usernames(*texts: str) -> list[str]:
    """The keys of the usernames mentioned in ``texts``, first mention first, each once."""
    seen: dict[str, None] = {}
    for text in texts:
        for mention in find_mentions(text):
            seen.setdefault(mention.key, None)
    return list(seen)
