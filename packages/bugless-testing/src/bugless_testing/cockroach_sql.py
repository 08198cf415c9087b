"""Statement-level CockroachDB compatibility: record what code sends, flag what CockroachDB lacks.

No CockroachDB server runs where bugless is tested, so code meant for it runs
against PostgreSQL at SERIALIZABLE (*compatibility mode*). PostgreSQL accepts
functions CockroachDB does not have, so passing there proves nothing about
them. :class:`StatementRecorder` records every statement any asyncpg
connection sends while it is active (the code under test opens its own pools:
the recorder attaches a query logger, asyncpg's public
``Connection.add_query_logger``, to each connection made meanwhile), and
:func:`cockroach_incompatibilities` names what in a statement CockroachDB
lacks. A test runs the code on its CockroachDB dialect inside a recorder and
asserts the list is empty.

The list is what CockroachDB 23.2 (the minimum bugless supports) does not
provide, from its "Functions and Operators" reference and known gaps:

* advisory locks (``pg_advisory_*``, ``pg_try_advisory_*``): undefined or
  no-op stubs, cockroachdb/cockroach#13546 (documented as unsupported in
  cockroachdb/docs#18154); asyncpg's own pool reset calls
  ``pg_advisory_unlock_all()`` on PostgreSQL, so a pool on the CockroachDB
  dialect must replace the reset;
* ``hashtext``/``hashtextextended`` (PostgreSQL-internal hashes);
* ``make_interval`` (use ``$1 * INTERVAL '1 second'``);
* LISTEN/NOTIFY (``pg_notify``, ``LISTEN``, ``UNLISTEN``, ``NOTIFY``) and
  ``pg_current_xact_id`` (the Model's PostgreSQL watch feed).
* user-defined aggregates (``CREATE AGGREGATE``; the "SQL Feature Support"
  page lists none): the Model's migration 13 makes one on PostgreSQL only.
* array slices (``a[2:]``, ``a[i:j]``): cockroachdb/cockroach#32551, open;
  a subscript of one element (``a[2]``) is supported, and ``unnest(a) WITH
  ORDINALITY`` filtered by the ordinal gives a slice's elements.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

import asyncpg

if TYPE_CHECKING:
    from bugless_dev.postgres import ThrowawayPostgres

#: Functions PostgreSQL has that CockroachDB 23.2 lacks (see the module docstring).
COCKROACH_LACKS_FUNCTIONS = (
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_advisory_unlock",
    "pg_advisory_unlock_all",
    "pg_advisory_unlock_shared",
    "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
    "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared",
    "hashtext",
    "hashtextextended",
    "make_interval",
    "pg_notify",
    "pg_current_xact_id",
)
#: Statements CockroachDB does not accept at all.
COCKROACH_LACKS_STATEMENTS = ("LISTEN", "UNLISTEN", "NOTIFY", "CREATE AGGREGATE")

_FUNCTION_CALL = re.compile(
    r"\b(" + "|".join(sorted(COCKROACH_LACKS_FUNCTIONS, key=len, reverse=True)) + r")\s*\(",
    re.IGNORECASE,
)
_STATEMENT = re.compile(
    r"(?:^|;)\s*("
    + "|".join(name.replace(" ", r"\s+") for name in COCKROACH_LACKS_STATEMENTS)
    + r")\b",
    re.IGNORECASE,
)
_STRING_OR_COMMENT = re.compile(r"'(?:[^']|'')*'|--[^\n]*|/\*.*?\*/", re.DOTALL)


def _blank(match: re.Match[str]) -> str:
    return "''" if match.group(0).startswith("'") else " "


def cockroach_incompatibilities(statement: str) -> list[str]:
    """What in ``statement`` CockroachDB lacks (function and statement names), in order.

    String literals and comments are ignored, so a comment mentioning an
    advisory lock is not a finding.
    """
    # A comment becomes a space, not a string, so a statement after one (a
    # migration file's header) still starts its statement.
    code = _STRING_OR_COMMENT.sub(_blank, statement)
    found = [m.group(1).lower() + "()" for m in _FUNCTION_CALL.finditer(code)]
    found += [" ".join(m.group(1).upper().split()) for m in _STATEMENT.finditer(code)]
    found += ["array slice " + " ".join(text.split()) for text in _array_slices(code)]
    return found


def _array_slices(code: str) -> list[str]:
    """Each subscript of ``code`` (from ``[`` to its ``]``) that is a slice, in order.

    A slice is a subscript holding a lone ``:`` at its own level: not a
    ``::`` cast, not a ``:=`` named argument, not one inside a subscript or
    an ``ARRAY[...]`` within it. Brackets are matched, since a slice's bound
    may hold a subscript or an array (``a[b[1]:]``,
    ``a[:cardinality(ARRAY[1])]``), which a pattern of one level missed.
    """
    found: list[tuple[int, int]] = []
    opened: list[list[int]] = []  # [start, holds a lone ':'] of each open '['
    for position, character in enumerate(code):
        if character == "[":
            opened.append([position, 0])
        elif character == "]" and opened:
            start, sliced = opened.pop()
            if sliced:
                found.append((start, position + 1))
        elif (
            character == ":"
            and opened
            and code[position - 1 : position] != ":"
            and code[position + 1 : position + 2] not in (":", "=")
        ):
            opened[-1][1] = 1
    return [code[start:end] for start, end in sorted(found)]


#: The recorders active now, outermost first; a new connection goes to the last.
_ACTIVE: list[StatementRecorder] = []
#: asyncpg's own ``Connection.__init__`` while a recorder has replaced it.
_UNPATCHED: list[Callable[..., None]] = []


def _recording_init(conn: asyncpg.Connection, *args: Any, **kwargs: Any) -> None:
    _UNPATCHED[0](conn, *args, **kwargs)
    if _ACTIVE:
        conn.add_query_logger(_ACTIVE[-1]._record)


class StatementRecorder:
    """Records every statement sent by asyncpg connections opened while it is active.

    Use as a context manager around the code under test (it must open its
    connections inside). Not reentrant, but recorders nest: a connection is
    recorded by the innermost recorder active when it is opened, and by that
    one only. An enclosing recorder (model-cockroach's, open for the whole
    session) therefore does not also check what a test's own recorder checks
    and may exempt on purpose (the Authenticator's test that sends
    PostgreSQL-only SQL to prove its check sees it): with both checking, that
    test failed the session's check when both test trees ran in one pytest.

    Attributes:
        statements: Each statement's text, in the order sent.
    """

    def __init__(self) -> None:
        """An inactive recorder; enter it to record."""
        self.statements: list[str] = []
        self._lock = threading.Lock()

    def _record(self, logged: Any) -> None:
        with self._lock:
            self.statements.append(str(logged.query))

    def __enter__(self) -> Self:
        """Attach this recorder's query logger to every asyncpg connection made from now on.

        Raises:
            RuntimeError: This recorder is active already.
        """
        if self in _ACTIVE:
            raise RuntimeError("this StatementRecorder is recording already; it is not reentrant")
        if not _ACTIVE:
            _UNPATCHED.append(asyncpg.Connection.__init__)
            asyncpg.Connection.__init__ = _recording_init  # type: ignore[method-assign,assignment]
        _ACTIVE.append(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop attaching the logger to new connections (asyncpg's own once none records)."""
        if self in _ACTIVE:
            _ACTIVE.remove(self)
            if not _ACTIVE:
                asyncpg.Connection.__init__ = _UNPATCHED.pop()  # type: ignore[method-assign]

    def incompatibilities(self) -> dict[str, list[str]]:
        """Each recorded statement CockroachDB could not run, with what it lacks."""
        with self._lock:
            statements = list(self.statements)
        return {s: found for s in statements if (found := cockroach_incompatibilities(s))}


async def serializable_database(server: ThrowawayPostgres, name: str) -> str:
    """A fresh PostgreSQL database whose sessions default to SERIALIZABLE (compatibility mode).

    CockroachDB runs every transaction SERIALIZABLE; this is the PostgreSQL
    stand-in the CockroachDB dialects are tested on, with real 40001s.
    """
    url = await server.acreate_database(name)
    database = urlsplit(url).path.lstrip("/")
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            f"ALTER DATABASE \"{database}\" SET default_transaction_isolation = 'serializable'"
        )
    finally:
        await conn.close()
    return url


__all__ = [
    "COCKROACH_LACKS_FUNCTIONS",
    "COCKROACH_LACKS_STATEMENTS",
    "StatementRecorder",
    "cockroach_incompatibilities",
    "serializable_database",
]
