"""A faster default look-up for betterproto2 messages (same bytes, half the time).

betterproto2 0.10 compares every field with its default while serialising,
and each look-up (``Message._get_field_default``) enters
``warnings.catch_warnings()`` in case a *deprecated* field's default factory
warns. That context manager copies the warning filters every time: profiles
of the Model and the API put it at ~18% of their CPU on search pages, and it
makes encoding an ``Issue`` take twice as long (bench/README.md).

The protos here declare nothing deprecated, and betterproto2's default
factories (``int``, ``str``, ``list``, an enum's zero, a message class) never
warn, so the guard protects nothing for these messages. :func:`install`
replaces the method with the bare factory call. ``tests/test_speedups.py``
checks that every message of ``bugless.v1`` serialises to the same bytes as
with the original method, and that no generated module warns. The
replacement applies process-wide, to every betterproto2 message; it is
installed when :mod:`bugless_proto` is imported, which every bugless process
does before it encodes anything.
"""

from __future__ import annotations

from typing import Any

import betterproto2

_ORIGINAL = betterproto2.Message._get_field_default


def _get_field_default(self: betterproto2.Message, field_name: str) -> Any:
    return self._betterproto.default_gen[field_name]()  # type: ignore[arg-type]


def install() -> None:
    """Use the unguarded default look-up (idempotent)."""
    betterproto2.Message._get_field_default = _get_field_default  # type: ignore[method-assign]


def uninstall() -> None:
    """Restore betterproto2's own look-up (for the equivalence test)."""
    betterproto2.Message._get_field_default = _ORIGINAL  # type: ignore[method-assign]
