r"""The rules usernames follow: what one may be, and what it compares by.

Usernames are case-insensitive everywhere in bugless: the Authenticator keys
each user by :func:`username_key` (a stored, uniquely indexed
``username_key``), and every cache or map of people by name, in any service,
keys them the same way, so that a name the Authenticator found is also found
in the caller's own map.

The key is RFC 8265's UsernameCaseMapped profile without its width mapping:
Unicode lower-casing, then NFC. Not case folding (``str.casefold``, which
searches use), because that would make "Strauß" and "Strauss" one account;
and never SQL's ``lower()``, which under the C locale (the test clusters',
``bugless dev``'s, a CloudNativePG default) lower-cases ASCII only, so that
"Ölaf", from a directory, was not found even spelled exactly.

What a username may be is one grammar too (:func:`is_valid_username`): a
letter or digit of any script, then letters, digits, combining marks and
``. _ @ + -``, 1 to :data:`USERNAME_MAX_LENGTH` characters. Every name the
store accepts for a new user follows it (``bugless_auth.user_admin.check_username``
and :func:`username_problem`, which also refuse look-alikes); the
``@mention`` grammar (:mod:`bugless_core.mentions`) and the search language's
user values are built from the same character classes
(:func:`username_classes`), so every name a person can be given can be
mentioned and searched for. Combining marks count because names are typed
decomposed too ("O" + U+0308 for "Ö") and because some scripts write vowels
with them (Devanagari "अनिल" holds U+093F), where ``\w`` alone would cut the
name short.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from dataclasses import dataclass

#: The most characters a username may have (the local store's limit).
USERNAME_MAX_LENGTH = 128
#: The punctuation a username may hold after its first character.
USERNAME_PUNCTUATION = "._@+-"
#: The planes holding combining marks (Basic and Supplementary Multilingual,
#: Supplementary Special-purpose: variation selectors); a test checks that no
#: other plane has one in this Python's Unicode database.
MARK_PLANES = (0, 1, 14)

#: What a placeholder's name may not hold: ASCII letters, digits and the usernames'
#: punctuation but "@" (which separates the source) make it up.
_NOT_PLACEHOLDER = re.compile(r"[^A-Za-z0-9._+-]+")


def username_key(username: str) -> str:
    """What ``username`` is compared by: lower-cased, then NFC ("Ölaf", "ÖLAF" → "ölaf").

    NFC makes a name typed decomposed ("O" + combining diaeresis, as some
    keyboards and file systems write it) the name a directory sends composed.
    """
    if username.isascii():  # already NFC: every cache keys every name it holds or is asked
        return username.lower()
    return unicodedata.normalize("NFC", username.lower())


def is_combining_mark(ch: str) -> bool:
    """Whether ``ch`` is a combining mark (Unicode category M: Mn, Mc, Me)."""
    return unicodedata.category(ch)[0] == "M"


def is_username_character(ch: str) -> bool:
    """Whether ``ch`` may appear in a username after its first character."""
    return ch.isalnum() or ch in USERNAME_PUNCTUATION or is_combining_mark(ch)


@dataclass(frozen=True)
class UsernameClasses:
    r"""The username grammar as regular-expression pieces (for ``re``, Unicode ``str`` patterns).

    Attributes:
        first: One character a username starts with: a letter or digit
            (``[^\W_]``: what ``str.isalnum`` accepts).
        inner: One character of the rest: a letter, digit, combining mark or
            one of :data:`USERNAME_PUNCTUATION`.
        mark: One combining mark.
        marks: The body of :attr:`mark`'s class (to put in another class).
    """

    first: str
    inner: str
    mark: str
    marks: str


@functools.cache
def username_classes() -> UsernameClasses:
    r"""The grammar's character classes, built once per process (about 30 ms, on first use).

    ``re`` has no ``\p{M}``, so the combining marks are read from
    :mod:`unicodedata` (this Python's Unicode version) into ranges.
    """
    ranges: list[tuple[int, int]] = []
    for plane in MARK_PLANES:
        for code in range(plane << 16, min((plane + 1) << 16, sys.maxunicode + 1)):
            if not is_combining_mark(chr(code)):
                continue
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1] = (ranges[-1][0], code)
            else:
                ranges.append((code, code))
    marks = "".join(
        f"\\U{low:08x}" if low == high else f"\\U{low:08x}-\\U{high:08x}" for low, high in ranges
    )
    punctuation = re.escape(USERNAME_PUNCTUATION.replace("_", ""))  # \w holds "_"
    return UsernameClasses(
        first=r"[^\W_]",
        inner=f"[\\w{marks}{punctuation}]",
        mark=f"[{marks}]",
        marks=marks,
    )


@functools.cache
def _username() -> re.Pattern[str]:
    c = username_classes()
    return re.compile(f"{c.first}{c.inner}{{0,{USERNAME_MAX_LENGTH - 1}}}")


def is_valid_username(username: str) -> bool:
    """Whether ``username`` follows the grammar (what the local store accepts)."""
    return _username().fullmatch(username) is not None


#: Scripts a name may mix, beyond one script alone: Latin with the CJK scripts
#: one language writes together (UTS 39's "highly restrictive" level).
_SCRIPT_MIXES = (
    frozenset({"LATIN", "CJK", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "CJK", "BOPOMOFO"}),
    frozenset({"LATIN", "CJK", "HANGUL"}),
)
#: First words of character names that name no script (ASCII digits, modifier
#: letters such as U+02BC and the Japanese prolonged sound mark).
_NO_SCRIPT = frozenset({"DIGIT", "MODIFIER", "KATAKANA-HIRAGANA"})


def _script(ch: str) -> str | None:
    """The script a letter or digit is written in, from its Unicode name ("LATIN", "CYRILLIC").

    Python's :mod:`unicodedata` has no Script property; the first word of a
    character's name is that script for letters and digits (the CJK
    ideographs' is "CJK", the iteration marks' "IDEOGRAPHIC", both taken as
    CJK). Marks and punctuation inherit the script of what they follow: None.
    """
    if not (ch.isalnum() and unicodedata.category(ch)[0] in "LN"):
        return None
    words = unicodedata.name(ch, "").split(" ")
    if words[0] == "EXTENDED":  # EXTENDED ARABIC-INDIC DIGIT ONE
        words = words[1:]
    word = words[0]
    if word in _NO_SCRIPT or not word:
        return None
    word = word.split("-", 1)[0]  # ARABIC-INDIC DIGIT ONE: Arabic
    return "CJK" if word == "IDEOGRAPHIC" else word


def username_scripts(username: str) -> frozenset[str]:
    """The scripts the letters and digits of ``username`` are written in (see :func:`_script`)."""
    return frozenset(s for s in map(_script, username) if s is not None)


def username_problem(username: str) -> str | None:
    """Why ``username`` cannot name a person (a phrase: "holds ' ' (U+0020 SPACE)"), or None.

    The rule for names a directory hands bugless (LDAP, OIDC, certificate
    mappings; ``bugless_auth.external_names``): :func:`is_valid_username`'s
    grammar, so that search, mentions, ``/users/<name>`` and the CLI take it,
    and two defences against a name passing for a colleague's, which
    :func:`username_key` (case and normal form) cannot see:

    * no compatibility characters (the name is its own NFKC): fullwidth
      "admin" (U+FF41...), mathematical bold "admin" (U+1D41A...), ligatures
      and superscripts all show as another, plain, name;
    * one script, or Latin with the CJK scripts written together (UTS 39's
      "highly restrictive" level): "paul" with a Cyrillic "a" (U+0430) is refused.

    A whole name in a look-alike script (Cyrillic U+0440 U+043E U+0440 for
    "pop") passes this check, which reads the name alone: telling it from
    "pop" takes the names already held. The Authenticator does that for the
    names it chooses, refusing a new local username (``user add``,
    CreateLocalUser, ``user rename``'s NEW) whose UTS #39 skeleton is a held
    name's (``bugless_auth.confusable_names``); a directory's names are the
    directory's, and not compared.
    """
    if not username:
        return "is empty"
    if len(username) > USERNAME_MAX_LENGTH:
        return f"is longer than {USERNAME_MAX_LENGTH} characters ({len(username)})"
    for i, ch in enumerate(username):
        allowed = ch.isalnum() if i == 0 else is_username_character(ch)
        if not allowed:
            where = "starts with" if i == 0 else "holds"
            rule = (
                "a username starts with a letter or digit"
                if i == 0
                else f"a username holds letters, digits, combining marks and {USERNAME_PUNCTUATION}"
            )
            return f"{where} {_shown(ch)}; {rule}"
    composed = unicodedata.normalize("NFC", username)
    compatible = unicodedata.normalize("NFKC", composed)
    if compatible != composed:
        at = next((c for c in composed if unicodedata.normalize("NFKC", c) != c), composed[0])
        return (
            f"holds {_shown(at)}, a compatibility form of "
            f"{unicodedata.normalize('NFKC', at)!r} that shows as another name"
        )
    if not is_valid_username(composed):  # the characters pass; the grammar is the judge
        return "does not follow the username grammar"
    scripts = username_scripts(composed)
    if len(scripts) > 1 and not any(scripts <= mix for mix in _SCRIPT_MIXES):
        return f"mixes scripts ({', '.join(sorted(scripts))}), which lets a name pass for another"
    return None


def _shown(ch: str) -> str:
    """``'x' (U+0078 LATIN SMALL LETTER X)``: a character as an error names it."""
    name = unicodedata.name(ch, "unnamed")
    return f"{ch!r} (U+{ord(ch):04X} {name})"


def placeholder_username(
    source: str, *, username: str = "", email: str = "", key: str = "", attempt: int = 1
) -> str:
    """``<name>@<source>`` (then ``.2``, ``.3`` ...) for an imported person no account matched.

    The name is the person's login, else their address's local part, else
    their key, with accents dropped ("Jürgen" → "Jurgen") and any other
    character but ASCII letters, digits and ``. _ + -`` made "-". One rule for the
    Authenticator, which makes the placeholder, and ``bugless import
    --dry-run``, which shows what it will be called (a taken name gets the
    next ``attempt``, which only the Authenticator can see).
    """
    base = username or email.split("@", 1)[0] or key
    base = "".join(c for c in unicodedata.normalize("NFKD", base) if not unicodedata.combining(c))
    base = _NOT_PLACEHOLDER.sub("-", base).strip("-._+") or "someone"
    suffix = f"@{source}" + (f".{attempt}" if attempt > 1 else "")
    return base[: 120 - len(suffix)] + suffix
