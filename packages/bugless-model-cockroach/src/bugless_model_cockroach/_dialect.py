"""What the CockroachDB backend changes in the PostgreSQL backend's SQL.

Two dialects, chosen when the backend opens by asking the server what it is:

* :data:`COCKROACH` on a CockroachDB server: no advisory locks (migrations
  hold a lease, :class:`bugless_core.migrations.LeaseLock`; SERIALIZABLE, CockroachDB's
  isolation, makes the cycle check's write skew abort and retry instead of
  needing the hierarchy lock), no LISTEN/NOTIFY (readers poll), a change
  feed whose writers append to a pending table that a sequencer numbers
  (``feed_append``, :mod:`._sequencer`; one ``head`` row updated by every
  writer would make overlapping writers restart), and follower reads for
  searches with ``allow_stale``; no user-defined aggregates, so an edit or
  a redaction parses every current comment text again to make its issue's
  comment vector (``stored_comment_vectors``).
* :data:`COMPATIBILITY` on PostgreSQL running SERIALIZABLE by default (how
  this package is tested where no CockroachDB server exists): the same,
  except that ``AS OF SYSTEM TIME`` does not exist there, so stale searches
  read fresh.
"""

from __future__ import annotations

from bugless_core.transactions import COCKROACH_RETRIES, CockroachRetryPolicy
from bugless_model_cockroach import _queries as q
from bugless_model_postgres.seam import Dialect

COCKROACH = Dialect(
    name="cockroachdb",
    hierarchy_lock=None,
    notify=None,
    stale_read=q.FOLLOWER_READ,
    feed_append=q.FEED_PENDING_APPEND,
    stored_comment_vectors=False,
)

COMPATIBILITY = Dialect(
    name="postgresql (cockroach compatibility mode)",
    hierarchy_lock=None,
    notify=None,
    stale_read=None,
    feed_append=q.FEED_PENDING_APPEND,
    stored_comment_vectors=False,
)


def dialect_for(server_version: str) -> Dialect:
    """The dialect for a server whose ``version()`` is ``server_version``."""
    return COCKROACH if "CockroachDB" in server_version else COMPATIBILITY


#: The retry rule lives once, in :mod:`bugless_core.transactions` (the
#: Authenticator's store on CockroachDB uses the same one).
__all__ = ["COCKROACH", "COCKROACH_RETRIES", "COMPATIBILITY", "CockroachRetryPolicy", "dialect_for"]
