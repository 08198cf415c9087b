"""Statement recorders nest: a connection is checked by the innermost one only.

This tree's session-wide recorder (``cockroach_statements``) stays active
while every other test of the pytest run runs, including other trees' tests
with recorders of their own, which may exempt a test that sends
PostgreSQL-only SQL on purpose (bugless-auth's ``test_cockroach_dialect``).
"""

from __future__ import annotations

import asyncpg
import pytest

from bugless_testing.cockroach_sql import StatementRecorder, cockroach_incompatibilities
from bugless_testing.postgres import ThrowawayPostgres

POSTGRES_ONLY = "SELECT pg_advisory_unlock_all()"


async def _run(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def test_a_connection_is_recorded_by_the_innermost_recorder_only(
    postgres_server: ThrowawayPostgres,
) -> None:
    url = await postgres_server.acreate_database("statement_recorder")
    before = asyncpg.Connection.__init__
    with StatementRecorder() as outer:
        with StatementRecorder() as inner:
            await _run(url, POSTGRES_ONLY)
        await _run(url, "SELECT 1")
    assert inner.incompatibilities() == {POSTGRES_ONLY: ["pg_advisory_unlock_all()"]}
    assert "SELECT 1" not in inner.statements
    assert "SELECT 1" in outer.statements
    assert outer.incompatibilities() == {}
    assert asyncpg.Connection.__init__ is before
    await _run(url, "SELECT 2")  # after both: neither records
    assert "SELECT 2" not in outer.statements + inner.statements


def test_a_recorder_is_not_reentrant() -> None:
    with StatementRecorder() as recorder, pytest.raises(RuntimeError, match="not reentrant"):
        recorder.__enter__()
    with recorder:  # again, once it is done
        pass


def test_an_array_slice_is_named_and_a_subscript_or_cast_is_not() -> None:
    """CockroachDB has no array slices (cockroachdb/cockroach#32551).

    The Model's component moves and seen paths sliced arrays, which
    compatibility mode ran and a cluster would refuse; they read elements
    by ordinal now, and the session's recorder names any slice sent.
    """
    assert cockroach_incompatibilities("SELECT (a)[n + 1:], b[2:3] FROM t") == [
        "array slice [n + 1:]",
        "array slice [2:3]",
    ]
    assert cockroach_incompatibilities("SELECT a[1], ARRAY[$1::bigint], $2::text[], '[1:2]'") == []


def test_a_slice_whose_bound_holds_brackets_is_named_and_a_named_argument_is_not() -> None:
    """A slice's bound may hold a subscript or an array: the brackets are matched.

    A pattern of one bracket level read ``a[b[1]:]`` as the subscript
    ``[1]`` and let the slice through; ``f(a := 1)`` in an array is no slice.
    """
    assert cockroach_incompatibilities(
        "SELECT a[b[1]:], c[:cardinality(ARRAY[1, 2])], d[$1::int:$2::int][3] FROM t"
    ) == [
        "array slice [b[1]:]",
        "array slice [:cardinality(ARRAY[1, 2])]",
        "array slice [$1::int:$2::int]",
    ]
    assert cockroach_incompatibilities("SELECT ARRAY[f(a := 1)], x[y[2]], z::int[][]") == []
