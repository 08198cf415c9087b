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

import re
import unicodedata

#: What a placeholder's name may not hold (the local store's username characters).
_NOT_PLACEHOLDER = re.compile(r"[^A-Za-z0-9._+-]+")


def username_key(username: str) -> str:
    """What ``username`` is compared by: lower-cased, then NFC ("Ölaf", "ÖLAF" → "ölaf").

    NFC makes a name typed decomposed ("O" + combining diaeresis, as some
    keyboards and file systems write it) the name a directory sends composed.
    """
    if username.isascii():  # already NFC: every cache keys every name it holds or is asked
        return username.lower()
    return unicodedata.normalize("NFC", username.lower())


def placeholder_username(
    source: str, *, username: str = "", email: str = "", key: str = "", attempt: int = 1
) -> str:
    """``<name>@<source>`` (then ``.2``, ``.3`` ...) for an imported person no account matched.

    The name is the person's login, else their address's local part, else
    their key, with accents dropped ("Jürgen" → "Jurgen") and any other
    character a username may not hold made "-". One rule for the
    Authenticator, which makes the placeholder, and ``bugless import
    --dry-run``, which shows what it will be called (a taken name gets the
    next ``attempt``, which only the Authenticator can see).
    """
    base = username or email.split("@", 1)[0] or key
    base = "".join(c for c in unicodedata.normalize("NFKD", base) if not unicodedata.combining(c))
    base = _NOT_PLACEHOLDER.sub("-", base).strip("-._+") or "someone"
    suffix = f"@{source}" + (f".{attempt}" if attempt > 1 else "")
    return base[: 120 - len(suffix)] + suffix
