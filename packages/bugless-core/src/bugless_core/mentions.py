"""``@username`` mentions: the one grammar the web renderer and the notifier share.

A mention is ``@`` then a username (letters, digits, ``.``, ``_``, ``-``; not
ending in punctuation, so "ask @ann." mentions ``ann``) not preceded by a word
character, ``@`` or ``.``, so an e-mail address (``me@ann.example``) mentions
nobody. The web links each one to the person's page; the notifier notifies the
people named (usernames resolved through the Authenticator, unknown ones
ignored).
"""

from __future__ import annotations

import re

MENTION = re.compile(r"(?<![\w@.])@([A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9])?)")


def mentioned_usernames(*texts: str) -> list[str]:
    """Usernames mentioned in ``texts``, first mention first, lower case, each once."""
    seen: dict[str, None] = {}
    for text in texts:
        for match in MENTION.finditer(text):
            seen.setdefault(match.group(1).lower(), None)
    return list(seen)
