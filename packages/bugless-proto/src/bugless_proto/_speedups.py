"""A faster default look-up for betterproto2 messages (same bytes, half the time).

betterproto2 0.10 compares every field with its default while serialising,
and each look-up (``Message._get_field_default``) enters
``warnings.catch_warnings()`` in case a *deprecated* field's default factory
warns. That context manager copies the warning filters every time: profiles
of the Model and the API put it at ~18% of their CPU on search pages, and it
makes encoding an ``Issue`` take twice as long (bench/JOURNAL.md).

The protos here declare nothing deprecated, and betterproto2's default
factories (``int``, ``str``, ``list``, an enum's zero, a message class) never
warn, so the guard protects nothing for these messages. :func:`install`
replaces the method with the bare factory call. ``tests/test_speedups.py``
checks that every message of ``bugless.v1`` serialises to the same bytes as
with the original method, and that no generated module warns. The
replacement applies process-wide, to every betterproto2 message; it is
installed when :mod:`bugless_proto` is imported, which every bugless process
does before it encodes anything. The private method is reached through
:mod:`bugless_proto._compat_betterproto2`.
"""

from __future__ import annotations

from bugless_proto._compat_betterproto2 import (
    ORIGINAL_FIELD_DEFAULT_LOOKUP,
    set_field_default_lookup,
    unguarded_field_default,
)

#: The look-up :func:`install` puts in place (a test checks it is in force).
FAST_LOOKUP = unguarded_field_default


def install() -> None:
    """Use the unguarded default look-up (idempotent)."""
    set_field_default_lookup(FAST_LOOKUP)


def uninstall() -> None:
    """Restore betterproto2's own look-up (for the equivalence test)."""
    set_field_default_lookup(ORIGINAL_FIELD_DEFAULT_LOOKUP)
