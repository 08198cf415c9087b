"""The one place bugless_auth reaches into bonsai's internals: its DN check refuses a '#'.

bonsai (1.5.5) checks every DN it is given, and the DN of every entry a
search returns, against ``LDAPDN._dnregex``, whose unquoted attribute value
excludes ``#`` anywhere. RFC 4514 escapes only a *leading* ``#`` (which starts
the hex form, ``cn=#0C03616E6E``), so ``cn=C# developers`` and
``uid=team#1`` are valid DNs a directory holds, and a search returning such
an entry failed whole with ``InvalidDN``: a person so named could not sign
in, a group so named could not be counted, and the re-sync skipped every
person of a batch holding one.

:func:`allow_hash_inside_values` puts back the same pattern, but for a ``#``
after a value's first character. It only widens what is accepted (every DN
the old pattern took, the new one takes), and changes the class attribute
only while it is the pattern this was written against: a bonsai that fixed
or moved it is left alone, and ``tests/test_bonsai_compat.py`` fails, so the
workaround is looked at again rather than silently doing nothing.
"""

from __future__ import annotations

import re

import bonsai.ldapdn

#: bonsai 1.5.5's ``LDAPDN._attrvalue``: a hex form, an unquoted value without
#: ``#`` anywhere, or a quoted value.
BONSAI_ATTRIBUTE_VALUE = (
    r'#(?:[\dA-Fa-f]{2})+|(?:[^,=\+<>#;\\"]|\\[,=\+<>#;\\" ]'
    r'|\\[\dA-Fa-f]{2})*|"(?:[^\\"]|\\[,=\+<>#;\\"]|\\[\dA-Fa-f]{2})*"'
)
#: The same, with ``#`` allowed after an unquoted value's first character.
ATTRIBUTE_VALUE = (
    r"#(?:[\dA-Fa-f]{2})+"
    r'|(?:(?:[^,=\+<>#;\\"]|\\[,=\+<>#;\\" ]|\\[\dA-Fa-f]{2})'
    r'(?:[^,=\+<>;\\"]|\\[,=\+<>#;\\" ]|\\[\dA-Fa-f]{2})*)?'
    r'|"(?:[^\\"]|\\[,=\+<>#;\\"]|\\[\dA-Fa-f]{2})*"'
)


def _dn_pattern(attribute_type: str, attribute_value: str) -> re.Pattern[str]:
    """``LDAPDN._dnregex`` as bonsai builds it from its type and value patterns."""
    pair = f"({attribute_type})=({attribute_value})"
    component = rf"{pair}(?:\+{pair})*"
    return re.compile(rf"({component})(?:,({component}))*\Z", re.IGNORECASE)


def allow_hash_inside_values() -> bool:
    """Let bonsai take DNs with a ``#`` inside a value; whether its check is now the widened one.

    Idempotent. False: bonsai's check is neither the one this was written
    against nor the widened one (an upgrade changed it), and it is left as is.
    """
    dn_class = bonsai.ldapdn.LDAPDN
    attribute_type = getattr(dn_class, "_attrtype", None)
    current = getattr(dn_class, "_dnregex", None)
    if not isinstance(attribute_type, str) or not isinstance(current, re.Pattern):
        return False
    widened = _dn_pattern(attribute_type, ATTRIBUTE_VALUE)
    if current.pattern == widened.pattern:
        return True
    if current.pattern != _dn_pattern(attribute_type, BONSAI_ATTRIBUTE_VALUE).pattern:
        return False
    dn_class._dnregex = widened
    return True
