"""What the CockroachDB backend changes in the PostgreSQL backend's SQL.

Two dialects, chosen when the backend opens by asking the server what it is:

* :data:`COCKROACH` on a CockroachDB server: no advisory locks (migrations
  hold a lease, :class:`bugless_core.migrations.LeaseLock`; SERIALIZABLE, CockroachDB's
  isolation, makes the cycle check's write skew abort and retry instead of
  needing the hierarchy lock), no LISTEN/NOTIFY and no change feed (the
  backend declares neither ``watch`` nor ``change_feed``; see the README),
  and follower reads for searches with ``allow_stale``.
* :data:`COMPATIBILITY` on PostgreSQL running SERIALIZABLE by default (how
  this package is tested where no CockroachDB server exists): the same,
  except that ``AS OF SYSTEM TIME`` does not exist there, so stale searches
  read fresh.
"""

from __future__ import annotations

import asyncpg

from bugless_core.leases import is_serialization_failure
from bugless_model_cockroach import _queries as q
from bugless_model_postgres.seam import Dialect, RetryPolicy

COCKROACH = Dialect(
    name="cockroachdb",
    hierarchy_lock=None,
    notify=None,
    stale_read=q.FOLLOWER_READ,
    change_feed=False,
)

COMPATIBILITY = Dialect(
    name="postgresql (cockroach compatibility mode)",
    hierarchy_lock=None,
    notify=None,
    stale_read=None,
    change_feed=False,
)


def dialect_for(server_version: str) -> Dialect:
    """The dialect for a server whose ``version()`` is ``server_version``."""
    return COCKROACH if "CockroachDB" in server_version else COMPATIBILITY


class CockroachRetryPolicy(RetryPolicy):
    """Retries what CockroachDB asks clients to retry.

    Under SERIALIZABLE, contention surfaces as SQLSTATE 40001 ("restart
    transaction: TransactionRetryWithProtoRefreshError ...", and
    ReadWithinUncertaintyIntervalError even for read-only transactions); the
    client must re-run the whole transaction. 40003 (statement completion
    unknown) is *not* retried: the commit may have happened.
    """

    def is_retryable(self, exc: BaseException) -> bool:
        """40001 in any form, the "restart transaction" errors, and deadlocks."""
        if super().is_retryable(exc):
            return True
        if isinstance(exc, asyncpg.PostgresError):
            return is_serialization_failure(exc) or "restart transaction" in str(exc)
        return False


#: Contention is normal on CockroachDB: more tries, longer capped backoff,
#: full jitter so colliding transactions spread out.
COCKROACH_RETRIES = CockroachRetryPolicy(attempts=8, base_delay=0.02, max_delay=1.0, jitter=True)
