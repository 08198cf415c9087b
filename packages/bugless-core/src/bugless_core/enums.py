"""Proto enum members by the names people and forms give them.

A web form submits ``P1`` or ``FIXED``, the ``bugless`` client takes
``--status wont-fix-obsolete``, an ACL form says ``editor``: all of them mean a
``bugless.v1`` enum member, and all of them read it here, so every surface
accepts the same spellings and refuses the same way (naming the field and
listing what it takes).
"""

from __future__ import annotations

import enum
from typing import TypeVar

from bugless_core.errors import InvalidArgument

E = TypeVar("E", bound=enum.Enum)


def enum_by_name(enum_type: type[E], name: E | str, field: str, *, blank: E | None = None) -> E:
    """The member of ``enum_type`` that ``name`` names.

    Case does not matter, and ``-`` or a space stands for ``_``: ``P1``,
    ``p1``, ``FIXED``, ``wont-fix-obsolete`` and ``Wont fix obsolete`` all
    name members. A member passes through unchanged. The UNSPECIFIED member
    (0) is never named: it means "not given", and ``blank`` says whether an
    empty name may mean it.

    Args:
        enum_type: A ``bugless.v1`` enum (``v1.Status``, ``v1.Priority``...).
        name: The name as typed or submitted, or already a member.
        field: The field being read, for the message.
        blank: What an empty name means (a form's "no choice"); ``None``
            refuses an empty name like any unknown one.

    Returns:
        The member.

    Raises:
        InvalidArgument: ``name`` names no member other than UNSPECIFIED;
            the message names ``field`` and lists the accepted names
            (``priority: 'P9' is not one of p0, p1, p2, p3, p4``).
    """
    if isinstance(name, enum_type):
        return name
    text = str(name).strip()
    if not text and blank is not None:
        return blank
    member = enum_type.__members__.get(text.upper().replace("-", "_").replace(" ", "_"))
    if member is not None and member.value != 0:
        return member
    choices = ", ".join(m.name.lower() for m in enum_type if m.value != 0)
    problem = (
        f"{name!r} is not one of {choices}" if member is None and text else f"give one of {choices}"
    )
    raise InvalidArgument(f"{field}: {problem}", metadata={"field": field})


__all__ = ["enum_by_name"]
