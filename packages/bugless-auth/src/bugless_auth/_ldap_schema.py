"""Which attributes the server's schema gives no substring matching rule (RFC 4512).

An equality item of ``user_filter`` with ``{username}`` next to other text,
``(homeDirectory=/home/{username})``, is a substring test in the filter the
re-sync and group counts send for every username
(:func:`bugless_auth._ldap_filter_syntax.substring_tests`). Where the
attribute type has no ``SUBSTR`` rule (nor a supertype with one) the server
evaluates that test as Undefined and lists nobody, though sign-ins work.
The subschema entry's ``attributeTypes`` say which: read once at start, and
only for a filter that has such an item.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from bugless_auth._ldap_filter_syntax import substring_tests
from bugless_core.errors import BuglessError

if TYPE_CHECKING:
    from bugless_auth._ldap_directory import LdapDirectory

__all__ = ["warn_of_substring_tests", "without_substring_rule"]

_log = logging.getLogger("bugless_auth.ldap")

_NAMES = re.compile(r"\bNAME\s+(?:'([^']*)'|\(\s*((?:'[^']*'\s*)+)\))")
_QUOTED = re.compile(r"'[^']*'")
_SUP = re.compile(r"\bSUP\s+([\w.;-]+)")
_SUBSTR = re.compile(r"\bSUBSTR\s+[\w.-]+")
#: Supertype chains are a few links long; a loop in a broken schema stops here.
_MAX_CHAIN = 16


def without_substring_rule(attribute_types: Iterable[str], attributes: Iterable[str]) -> list[str]:
    """Those of ``attributes`` whose type, and every supertype, lacks a ``SUBSTR`` rule.

    Args:
        attribute_types: The subschema's ``attributeTypes`` values
            (``( 1.3.6.1.1.1.1.3 NAME 'homeDirectory' EQUALITY caseExactIA5Match ... )``).
        attributes: Attribute names as the filter writes them (any case;
            an option such as ``;lang-en`` is ignored).

    Returns:
        The names in ``attributes`` order; one the schema does not define is
        left out (the server would refuse it in sign-ins too).
    """
    types: dict[str, tuple[str | None, bool]] = {}
    for text in attribute_types:
        names = _NAMES.search(text)
        if not names:
            continue
        bare = _QUOTED.sub("''", text)  # DESC may say anything
        sup = _SUP.search(bare)
        entry = (sup[1].lower() if sup else None, bool(_SUBSTR.search(bare)))
        for name in (names[1] or "").split() or re.findall(r"'([^']*)'", names[2] or ""):
            types[name.lower()] = entry
    missing = []
    for attribute in attributes:
        step: str | None = attribute.split(";", 1)[0].lower()
        if step not in types:
            continue
        for _ in range(_MAX_CHAIN):
            if step is None or step not in types:
                missing.append(attribute)
                break
            step, substr = types[step]
            if substr:
                break
    return missing


async def warn_of_substring_tests(directory: LdapDirectory, user_filter: str) -> None:
    """Warn of a ``user_filter`` item whose every-user form no entry can match.

    ``(homeDirectory=/home/{username})`` is ``(homeDirectory=/home/*)`` for
    the re-sync and group counts: on an attribute the server's schema gives
    no substring rule that lists nobody (the re-sync then refuses its
    rounds, ``LdapBackend.current_identities``). The backend runs it in the
    background once at start, only for such a filter: a directory that is
    down does not delay the start, and is only noted.
    """
    tests = dict(substring_tests(user_filter, "{username}"))
    if not tests:
        return
    try:
        types = await directory.attribute_types()
    except BuglessError as exc:
        _log.info("ldap user_filter: the server's schema was not read at start (%s)", exc)
        return
    for attribute in without_substring_rule(types, tests):
        _log.warning(
            "ldap user_filter: its %s item is %s for every username (what the re-sync "
            "and group counts search), and the server's schema gives %s no substring "
            "matching rule, so that matches no entry: the re-sync refuses its rounds and "
            "group counts find no one. Match %s by {username} alone or use an attribute "
            "with a SUBSTR rule",
            attribute,
            tests[attribute],
            attribute,
            attribute,
        )
