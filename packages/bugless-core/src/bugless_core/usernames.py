"""The one rule usernames compare by: :func:`username_key`.

Usernames are case-insensitive everywhere in bugless: the Authenticator keys
each user by it (a stored, uniquely indexed ``username_key``), and every cache
or map of people by name, in any service, keys them the same way, so that a
name the Authenticator found is also found in the caller's own map.

It is RFC 8265's UsernameCaseMapped profile without its width mapping:
Unicode lower-casing, then NFC. Not case folding (``str.casefold``, which
searches use), because that would make "Strauß" and "Strauss" one account;
and never SQL's ``lower()``, which under the C locale (the test clusters',
``bugless dev``'s, a CloudNativePG default) lower-cases ASCII only, so that
"Ölaf", from a directory, was not found even spelled exactly.
"""

from __future__ import annotations

import unicodedata


def username_key(username: str) -> str:
    """What ``username`` is compared by: lower-cased, then NFC ("Ölaf", "ÖLAF" → "ölaf").

    NFC makes a name typed decomposed ("O" + combining diaeresis, as some
    keyboards and file systems write it) the name a directory sends composed.
    """
    if username.isascii():  # already NFC: every cache keys every name it holds or is asked
        return username.lower()
    return unicodedata.normalize("NFC", username.lower())
