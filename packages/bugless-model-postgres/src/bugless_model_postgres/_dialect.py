"""The seam between PostgreSQL and the databases that speak its protocol.

Nearly every statement of this package runs unchanged on CockroachDB; the
few that cannot are named here, so a backend subclass (bugless-model-cockroach)
swaps them without copying the rest. A statement set to ``None`` is not run
at all: the subclass guarantees the same property another way (leases,
SERIALIZABLE isolation), which its own docstring explains.
"""

from __future__ import annotations

from dataclasses import dataclass

from bugless_model_postgres import _queries as q


@dataclass(frozen=True)
class Dialect:
    """The statements that differ between the databases this code runs on.

    Attributes:
        name: For messages and logs.
        hierarchy_lock: Run before a parent/duplicate cycle check so two
            changes cannot each pass it and together close a loop; ``None``
            when the isolation level already forbids that write skew.
        notify: Appends the change-feed row and NOTIFYs readers, in one
            statement run instead of ``FEED_APPEND`` (its parameters, then
            ``$6`` the channel); ``None`` without LISTEN/NOTIFY (readers poll).
        stale_read: First statement of a read-only search transaction that
            may read slightly stale data (``allow_stale``); ``None`` reads fresh.
        change_feed: Whether write transactions append to the change feed.
        feed_append: ``None``: a write takes its feed position from the one
            ``head`` row every writer updates just before commit (``notify``
            or ``FEED_APPEND``): cheap under READ COMMITTED (writers queue on
            the row lock), but under SERIALIZABLE every overlapping writer
            aborts (40001). Set, the statement a write appends its change to
            a pending table with instead (``FEED_APPEND``'s parameters,
            returning -1: no position yet): no row shared by writers, and
            positions are handed out after commit by the feed's sequencer
            (``ChangeFeed.sequencer``, bugless-model-cockroach's README).
        statement_snapshots: The server runs READ COMMITTED: every statement
            reads a snapshot of its own, in a transaction or not. A write that
            only reads (taking no locks) before writing everything in one
            statement then comes out the same without BEGIN and COMMIT, two
            round trips fewer (``run_write(one_statement=True)``). False
            under SERIALIZABLE (or REPEATABLE READ), where its reads and its
            write must be one transaction; the PostgreSQL backend sets it
            only after reading the database's default isolation.
        stored_comment_vectors: An edit or a redaction makes its issue's
            comment vector from the entries' stored vectors, concatenated by
            migration 0013's aggregate, storing those missing
            (``_edits.BUMP_AFTER_EDIT``); False on a database without
            user-defined aggregates (CockroachDB), which parses every
            current text again (``_edits.BUMP_AFTER_EDIT_FROM_TEXTS``).
    """

    name: str
    hierarchy_lock: str | None
    notify: str | None
    stale_read: str | None
    change_feed: bool = True
    feed_append: str | None = None
    statement_snapshots: bool = False
    stored_comment_vectors: bool = True


POSTGRES = Dialect(
    name="postgresql",
    hierarchy_lock=q.HIERARCHY_LOCK,
    notify=q.FEED_APPEND_AND_NOTIFY,
    stale_read=None,
    statement_snapshots=True,
)
