r"""Distinguished names read as text (RFC 4514): their RDNs, each value unescaped and decoded.

The LDAP backend compares DNs a group lists with the entries found, filters
by a member's RDN, and takes a group's name from its DN; each needs the
values as the directory holds them, not as they are escaped in a DN. bonsai's
``LDAPDN`` is not used: it refuses a ``#`` anywhere in a value (``cn=C#
developers``, ``cn=team #1`` are valid DNs; only a leading ``#`` needs an
escape), so a group so named was recorded at sign-in under its whole DN and a
member so named was never counted, and it keeps escapes in the values it
gives.

Read as libldap reads a DN from a server, a little more leniently than the
RFC: spaces around ``,``, ``+`` and ``=`` are dropped (LDAPv2 spelling, which
some servers still send), ``;`` separates RDNs like ``,``, and a ``"``, ``<``
or ``>`` in a value may come unescaped.
"""

from __future__ import annotations

import re

#: An attribute type (RFC 4512: a descr or a numericoid).
ATTRIBUTE_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)*", re.ASCII)
_HEX = frozenset("0123456789abcdefABCDEF")
#: What a backslash may escape as itself (RFC 4514 ``special``).
_ESCAPABLE = frozenset(' "#+,;<=>\\')
_SEPARATORS = frozenset(",+;")

#: The BER string types a value's hex form may hold, by tag, and how their
#: octets are text: UTF8String, PrintableString, IA5String and an OCTET
#: STRING (a string attribute's value sent as octets) as UTF-8 (the first
#: two are ASCII, a subset); BMPString and UniversalString as UCS-2 and
#: UCS-4, big-endian.
_BER_STRINGS = {
    0x0C: "utf-8",
    0x13: "utf-8",
    0x16: "utf-8",
    0x04: "utf-8",
    0x1E: "utf-16-be",
    0x1C: "utf-32-be",
}

RDN = tuple[tuple[str, str], ...]


def parse_dn(dn: str) -> tuple[RDN, ...] | None:
    r"""The RDNs of ``dn``, each its ``(attribute type, value)`` pairs; None if it is no DN.

    Values are text: escapes decoded (``\,`` and ``\2C`` are ``,``; hex
    pairs are bytes of UTF-8), and a value in RFC 4514's hex form
    (``#0C03616E6E``) is the string its BER encoding holds
    (:func:`ber_string`). None also for a value that is not text (bytes that
    are not UTF-8, a hex form that holds no string). The empty DN has no RDNs.
    """
    if not dn.strip(" "):
        return ()
    rdns: list[RDN] = []
    pairs: list[tuple[str, str]] = []
    position = 0
    while True:
        equals = dn.find("=", position)
        if equals < 0:
            return None
        attribute = dn[position:equals].strip(" ")
        if not ATTRIBUTE_TYPE.fullmatch(attribute):
            return None
        read = _value(dn, equals + 1)
        if read is None:
            return None
        value, position = read
        pairs.append((attribute, value))
        if position == len(dn):
            rdns.append(tuple(pairs))
            return tuple(rdns)
        if dn[position] != "+":
            rdns.append(tuple(pairs))
            pairs = []
        position += 1


def _value(dn: str, position: int) -> tuple[str, int] | None:
    """The value starting at ``position`` as text, and the position of what ends it."""
    while position < len(dn) and dn[position] == " ":
        position += 1
    if dn.startswith("#", position):
        end = position + 1
        while end < len(dn) and dn[end] not in _SEPARATORS and dn[end] != " ":
            end += 1
        text = ber_string(dn[position + 1 : end])
        while end < len(dn) and dn[end] == " ":
            end += 1
        if text is None or (end < len(dn) and dn[end] not in _SEPARATORS):
            return None
        return text, end
    octets = bytearray()
    kept = 0  # octets up to the last escaped one: trailing spaces after it are dropped
    while position < len(dn) and dn[position] not in _SEPARATORS:
        character = dn[position]
        if character == "\\":
            pair = dn[position + 1 : position + 3]
            if len(pair) == 2 and set(pair) <= _HEX:
                octets += bytes.fromhex(pair)
                position += 3
            elif pair[:1] and pair[0] in _ESCAPABLE:
                octets += pair[0].encode()
                position += 2
            else:
                return None
            kept = len(octets)
            continue
        if character == "\0":
            return None
        octets += character.encode("utf-8", "surrogatepass")
        if character != " ":
            kept = len(octets)
        position += 1
    try:
        return bytes(octets[:kept]).decode(), position
    except UnicodeDecodeError:
        return None


def ber_string(hex_digits: str) -> str | None:
    """The text of one BER-encoded string (a value's ``#`` form); None if it is not one.

    Not one: odd or non-hex digits, a tag of another type (a number, a
    sequence: no name a filter can match as text), a length that is not
    definite or disagrees with the octets, or octets that are not text in
    the type's encoding.
    """
    if len(hex_digits) % 2 or not set(hex_digits) <= _HEX:
        return None
    octets = bytes.fromhex(hex_digits)
    if len(octets) < 2 or (encoding := _BER_STRINGS.get(octets[0])) is None:
        return None
    length, start = octets[1], 2
    if length > 0x80:  # long form: the next (length & 0x7F) octets, big-endian
        start = 2 + (length & 0x7F)
        length = int.from_bytes(octets[2:start])
    elif length == 0x80:  # indefinite: not for a primitive string
        return None
    if start + length != len(octets):
        return None
    try:
        return octets[start:].decode(encoding)
    except UnicodeDecodeError:
        return None
