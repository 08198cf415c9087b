"""Schema names as SQL identifiers, checked before they reach a statement.

Every service that owns a schema (the Model's backends, the Authenticator,
the notifier) names it in settings and interpolates it into SQL, so the check
lives here, apart from :mod:`bugless_core.migrations`: settings validate the
name while the CLI parses flags, and that must not import the migration
engine's lease machinery (asyncio, prometheus_client) just to print
``serve --help``.
"""

from __future__ import annotations

import re

from bugless_core.errors import InvalidArgument

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def quote_schema(schema: str) -> str:
    """The schema as a quoted identifier, after checking it is a plain name.

    Raises:
        InvalidArgument: the name is not lower-case letters, digits and ``_``.
    """
    if not _SCHEMA_NAME.match(schema):
        msg = f"schema: {schema!r} is not a plain lower-case identifier (letters, digits, '_')"
        raise InvalidArgument(msg)
    return f'"{schema}"'
