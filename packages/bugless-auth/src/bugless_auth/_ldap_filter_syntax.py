r"""Whether a string is one LDAP search filter (RFC 4515), and if not, what is wrong where.

The LDAP backend's filter settings are checked at start with it
(:func:`bugless_auth.ldap.LdapSettings`), so a filter the client library or
the server would refuse at every sign-in, re-sync or count is refused once,
naming the setting. bonsai has no filter parser of its own (libldap parses
a filter only while sending a search, and says no more than "Bad search
filter"), and this module must import without bonsai, so it is a small
recursive descent over the RFC's grammar, as libldap reads it:

* spaces (and tabs, newlines) are allowed after ``(``, after ``&``, ``|``
  and ``!``, and after the filters of a list, as libldap skips them (never
  around the whole filter, nor after a ``!``'s filter, which it refuses);
* a filter must be in parentheses, also where libldap would add them
  (``uid=a`` alone): AND-ed with other conditions it would not be one;
* ``**`` is refused as libldap refuses it (RFC 4515's grammar allows the
  empty substring between);
* a value's escapes are ``\`` and two hex digits, or the older single
  characters ``\(``, ``\)``, ``\*`` and ``\\`` libldap still takes;
* ``(&)`` and ``(|)`` (RFC 4526's absolute true and false) are refused:
  slapd takes them, but Active Directory does not, and neither selects
  anything a filter setting means; ``(objectClass=*)`` is every entry.

The tests compare its verdicts with libldap's on one list of filters.

:func:`with_every_value` writes the filter a setting with a placeholder
becomes where the code asks for every entry it admits for any value (the
re-sync and group counts search every user with ``user_filter``):
putting ``*`` for ``{username}`` makes no filter where the placeholder is the
value of an extensible match, ``~=``, ``>=`` or ``<=``, nor where it sits next
to a ``*``.
"""

from __future__ import annotations

import re

#: An attribute description (RFC 4512): a descr or numericoid, then ;options.
_ATTRIBUTE = re.compile(
    r"(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)*)(?:;[A-Za-z0-9-]+)*", re.ASCII
)
#: An extensible match's left side (RFC 4515): attr [":dn"] [":" rule], or [":dn"] ":" rule.
_EXTENSIBLE = re.compile(
    r"(?:(?P<attribute>[A-Za-z0-9][A-Za-z0-9.;-]*)(?P<attribute_dn>:dn)?(?::(?P<rule>[A-Za-z0-9.-]+))?"
    r"|(?P<dn>:dn)?:(?P<only_rule>[A-Za-z0-9.-]+))",
    re.ASCII | re.IGNORECASE,
)
_OID = re.compile(r"[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)*", re.ASCII)
_HEX = frozenset("0123456789abcdefABCDEF")
#: What libldap skips between a filter's parts (its LDAP_SPACE).
_SPACES = frozenset(" \t\n")
_OLD_ESCAPES = frozenset("()*\\")
#: The deepest nesting taken: far beyond any filter setting, well within
#: Python's recursion limit (slapd drops a search nested some thousands deep).
MAX_DEPTH = 100


class FilterSyntaxError(ValueError):
    """``text`` is not one filter: ``reason`` at ``position`` (0-based)."""

    def __init__(self, reason: str, position: int) -> None:
        super().__init__(f"{reason} at character {position + 1}")
        self.reason = reason
        self.position = position


def check_filter(text: str, placeholders: tuple[str, ...] = ()) -> None:
    """Raise :class:`FilterSyntaxError` unless ``text`` is exactly one filter.

    Args:
        text: The filter.
        placeholders: Strings taken as a value wherever a value may be
            (``{username}``: the code puts an escaped value there), and
            nowhere else.

    Raises:
        FilterSyntaxError: what is wrong, and the character where it is.
    """
    end = _Parser(text, placeholders).filter(0)
    if end != len(text):
        raise FilterSyntaxError("text after the filter's closing ')'", end)


def with_every_value(text: str, placeholder: str) -> str:
    """The filter ``text`` becomes for every value of ``placeholder``, as one filter.

    It admits every entry ``text`` admits for some value put for
    ``placeholder`` (a non-empty string, escaped), and is always a filter:

    * an equality or substring item holding it keeps its other parts, the
      placeholder a ``*`` (``(mail={username}@example.com)`` becomes
      ``(mail=*@example.com)``), runs of ``*`` made one (``(uid=*{username})``
      becomes the presence test ``(uid=*)``);
    * an extensible match, ``~=``, ``>=`` or ``<=`` item holding it becomes
      the presence test of its attribute (``(uid:caseExactMatch:={username})``
      becomes ``(uid=*)``); an extensible match with no attribute, or with
      ``:dn`` (which also matches the entry's DN), becomes
      ``(objectClass=*)``;
    * a ``!`` holding it becomes ``(objectClass=*)``: some value makes the
      negated filter false for an entry, another true, so no narrower filter
      is right for every entry.

    Args:
        text: The filter, ``placeholder`` where a value is put.
        placeholder: What the code replaces by a value (``{username}``).

    Raises:
        FilterSyntaxError: ``text`` is not one filter (:func:`check_filter`).
    """
    parser = _Parser(text, (placeholder,))
    end = parser.filter(0)
    if end != len(text):
        raise FilterSyntaxError("text after the filter's closing ')'", end)
    pieces: list[str] = []
    done = 0
    for start, stop, replacement in sorted(parser.every_value):
        if start < done:  # inside a '!' already replaced
            continue
        pieces += [text[done:start], replacement]
        done = stop
    pieces.append(text[done:])
    return "".join(pieces)


def substring_tests(text: str, placeholder: str) -> list[tuple[str, str]]:
    """The equality items of ``text`` that :func:`with_every_value` makes substring tests.

    ``(mail={username}@example.com)`` is an equality test at sign-in and
    ``(mail=*@example.com)`` for every value: on an attribute whose schema
    gives no substring matching rule the server evaluates that as Undefined
    and it matches no entry, though sign-ins work. Each item as
    (attribute, the substring test), in filter order.

    Raises:
        FilterSyntaxError: ``text`` is not one filter (:func:`check_filter`).
    """
    parser = _Parser(text, (placeholder,))
    parser.filter(0)
    return parser.substring_tests


class _Parser:
    def __init__(self, text: str, placeholders: tuple[str, ...]) -> None:
        self.text = text
        self.placeholders = placeholders
        #: (start, end, filter): what each filter holding a placeholder, from
        #: its '(' to after its ')', becomes for every value of it.
        self.every_value: list[tuple[int, int, str]] = []
        #: (attribute, item): equality items holding a placeholder that
        #: become substring tests for every value (:func:`substring_tests`).
        self.substring_tests: list[tuple[str, str]] = []

    def _holds_placeholder(self, start: int, end: int) -> bool:
        return any(p in self.text[start:end] for p in self.placeholders)

    def _skip_spaces(self, position: int) -> int:
        while position < len(self.text) and self.text[position] in _SPACES:
            position += 1
        return position

    def filter(self, position: int, depth: int = 1) -> int:
        """Read the filter starting at ``position``; the position after its ``)``."""
        text = self.text
        start = position
        if position >= len(text) or text[position] != "(":
            raise FilterSyntaxError("expected '(' to open a filter", position)
        if depth > MAX_DEPTH:
            raise FilterSyntaxError(f"filters nested more than {MAX_DEPTH} deep", position)
        position = self._skip_spaces(position + 1)
        kind = text[position : position + 1]
        if kind in ("&", "|"):
            position = self._skip_spaces(position + 1)
            count = 0
            while text[position : position + 1] == "(":
                position = self._skip_spaces(self.filter(position, depth + 1))
                count += 1
            if count == 0:
                raise FilterSyntaxError(
                    f"'{kind}' with no filter in it (for every entry: (objectClass=*))", position
                )
        elif kind == "!":
            position = self.filter(self._skip_spaces(position + 1), depth + 1)
            if self._holds_placeholder(start, position):
                self.every_value.append((start, position + 1, "(objectClass=*)"))
        else:
            item_start = position
            position, every_value = self._item(position)
            if self._holds_placeholder(item_start, position):
                self.every_value.append((start, position + 1, f"({every_value})"))
        if text[position : position + 1] != ")":
            raise FilterSyntaxError("expected ')' to close the filter", position)
        return position + 1

    def _item(self, start: int) -> tuple[int, str]:
        """Read ``attr OP value`` from ``start``.

        Returns:
            The position of the ``)`` that ends it, and the item (without
            parentheses) it becomes for every value of the placeholders
            (:func:`with_every_value`), read only where it holds one.
        """
        text = self.text
        equals = text.find("=", start)
        closing = text.find(")", start)
        if equals < 0 or (0 <= closing < equals):
            raise FilterSyntaxError("expected attribute=value, '&', '|' or '!'", start)
        left = text[start:equals]
        operator = left[-1:] if left[-1:] in ("~", ">", "<", ":") else ""
        described = left[: len(left) - len(operator)]
        if operator == ":":
            match = _EXTENSIBLE.fullmatch(described)
            if not match or not all(
                _OID.fullmatch(rule) for rule in (match["rule"], match["only_rule"]) if rule
            ):
                raise FilterSyntaxError(
                    f"{left!r} is not an extensible match (attribute[:dn][:rule]:=)", start
                )
            if (match["only_rule"] or "").lower() == "dn" and not match["dn"]:
                # The grammar reads ":dn:=" as a rule named "dn"; libldap
                # reads it as ":dn" with neither attribute nor rule.
                raise FilterSyntaxError(
                    "':dn' with no attribute needs a matching rule (:dn:rule:=)", start
                )
            if match["attribute"] and not _ATTRIBUTE.fullmatch(match["attribute"]):
                raise FilterSyntaxError(f"{match['attribute']!r} is not an attribute name", start)
            present = "" if match["attribute_dn"] else (match["attribute"] or "")
        elif not _ATTRIBUTE.fullmatch(described):
            what = repr(described) if described else "nothing"
            raise FilterSyntaxError(f"{what} is not an attribute name", start)
        else:
            present = described
        end, every_value = self._value(equals + 1, substrings_allowed=not operator)
        if not operator:
            equality = "*" not in re.sub(r"\\.", "", text[equals + 1 : end])  # no unescaped *
            if equality and self._holds_placeholder(start, end) and every_value != "*":
                self.substring_tests.append((described, f"({described}={every_value})"))
            return end, f"{described}={every_value}"
        return end, f"{present or 'objectClass'}=*"

    def _value(self, position: int, *, substrings_allowed: bool) -> tuple[int, str]:
        """Read an assertion value.

        Returns:
            The position of the ``)`` after it, and the value with each
            placeholder a ``*`` and runs of ``*`` made one (meant for an
            equality or substring item only).
        """
        text = self.text
        every_value: list[str] = []
        while position < len(text) and text[position] != ")":
            character = text[position]
            placeholder = next((p for p in self.placeholders if text.startswith(p, position)), "")
            if (placeholder or character == "*") and every_value[-1:] != ["*"]:
                every_value.append("*")
            if placeholder:
                position += len(placeholder)
                continue
            if character == "\\":
                pair = text[position + 1 : position + 3]
                if len(pair) == 2 and set(pair) <= _HEX:
                    every_value.append(text[position : position + 3])
                    position += 3
                    continue
                if pair[:1] and pair[0] in _OLD_ESCAPES:
                    every_value.append(text[position : position + 2])
                    position += 2
                    continue
                raise FilterSyntaxError("'\\' not followed by two hex digits", position)
            if character == "(":
                raise FilterSyntaxError("'(' in a value (written \\28)", position)
            if character == "\0":
                raise FilterSyntaxError("a NUL character in a value (written \\00)", position)
            if "\ud800" <= character <= "\udfff":
                # What Python makes of bytes that are not UTF-8 in an
                # environment variable or a flag: no encoding sends them.
                raise FilterSyntaxError("a character that is not UTF-8", position)
            if character == "*" and not substrings_allowed:
                raise FilterSyntaxError(
                    "'*' in a value of ~=, >=, <= or := (written \\2a)", position
                )
            if character == "*" and text[position + 1 : position + 2] == "*":
                raise FilterSyntaxError("'**' (an empty substring)", position)
            if character != "*":
                every_value.append(character)
            position += 1
        if position == len(text):
            raise FilterSyntaxError("expected ')' to close the filter", position)
        return position, "".join(every_value)
