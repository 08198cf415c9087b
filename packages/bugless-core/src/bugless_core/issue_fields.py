"""The fields of an issue, described once for every package.

``IssueFields`` (``issue.proto``) is the list of an issue's scalar fields: what
a create sets, the paths a delta's ``update_mask`` may name, and the scalar
``FieldChange.field`` values of the history. The names here are read off the
generated message rather than copied, so a field added to the proto is known
at once to the delta builder, the Model's checks, the backends, the web forms
and the conformance suite, and a list somewhere can never fall behind.

It also holds the one rule about their values that every layer applies: which
statuses are open (``common.proto``: NEW, ASSIGNED and ACCEPTED; every other
status is closed). The Model sets ``closed_at`` by it and compiles ``is:open``
with it, and the pages and mails mark closed issues with it.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from types import MappingProxyType

import betterproto2

from bugless_proto import v1

#: ``IssueFields`` names in proto order: the scalar fields of an issue, the
#: paths an ``IssueDelta.update_mask`` may name, and the scalar
#: ``FieldChange.field`` values.
SCALAR_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(v1.IssueFields))

#: The other ``FieldChange.field`` values: lists, changed by additions and
#: removals (``FieldChange.added``/``removed``), never by an old and new value.
LIST_FIELDS: tuple[str, ...] = ("cc", "hotlist_ids", "blocking_ids", "blocked_by_ids")

#: The scalar fields whose values are proto enums, with their enum type (a
#: ``FieldChange`` writes them by member name: ``P1``, ``FIXED``).
ENUM_FIELDS: Mapping[str, type[betterproto2.Enum]] = MappingProxyType(
    {
        name: hint
        for name, hint in typing.get_type_hints(v1.IssueFields).items()
        if isinstance(hint, type) and issubclass(hint, betterproto2.Enum)
    }
)

#: The open class of statuses (``is:open``).
OPEN_STATUSES: frozenset[v1.Status] = frozenset(
    {v1.Status.NEW, v1.Status.ASSIGNED, v1.Status.ACCEPTED}
)
#: The closed class (``is:closed``): every other status but UNSPECIFIED.
CLOSED_STATUSES: frozenset[v1.Status] = frozenset(
    s for s in v1.Status if s.value and s not in OPEN_STATUSES
)


def is_open(status: v1.Status) -> bool:
    """Whether ``status`` is in the open class (NEW, ASSIGNED, ACCEPTED)."""
    return status in OPEN_STATUSES


__all__ = [
    "CLOSED_STATUSES",
    "ENUM_FIELDS",
    "LIST_FIELDS",
    "OPEN_STATUSES",
    "SCALAR_FIELDS",
    "is_open",
]
