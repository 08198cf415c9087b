"""The public subclassing seam for backends on databases that speak PostgreSQL's protocol.

bugless-model-cockroach is :class:`~bugless_model_postgres.PostgresBackend`
with a few statements and policies swapped. What such a subclass may use and
replace is named here and nowhere else; everything else in this package is
private and may change without notice. A subclass:

* sets ``migration_lock`` (a :class:`bugless_core.migrations.MigrationLock`:
  :class:`~bugless_core.migrations.LeaseLock` where there are no advisory locks);
* sets ``self._dialect`` to a :class:`Dialect` (statements that differ;
  ``None`` for one not run at all) and ``self._retry_policy`` to a
  :class:`RetryPolicy` (what errors re-run a transaction, with what backoff);
* may set ``self._new_issue_id`` (an :data:`IssueIdSource`: how a create
  mints an issue id, when not from the sequence);
* with a dialect whose ``feed_append`` appends to a pending table, sets
  ``self._feed.sequencer`` to a :class:`FeedSequencer` (what numbers the
  committed changes into ``change_feed``; readers and pruning run it);
* types the connections it is handed as :data:`Conn` (a direct asyncpg
  connection or a pooled one's proxy);
* may override the migration hooks ``_before_migrate``/``_after_migrate``
  and ``open``/``close``;
* wraps driver calls of its own in :func:`translated_errors` and opens
  connections with :func:`server_settings` (and pools with
  ``reset=``:func:`release_as_is`, since asyncpg's default reset calls
  ``pg_advisory_unlock_all()``), like the base class.
"""

from __future__ import annotations

from bugless_core.transactions import POSTGRES_RETRIES, RetryPolicy, retrying
from bugless_model_postgres._context import IssueIdSource
from bugless_model_postgres._convert import Conn
from bugless_model_postgres._database import (
    release_as_is,
    server_settings,
    translated_errors,
)
from bugless_model_postgres._dialect import POSTGRES, Dialect
from bugless_model_postgres._feed_passes import FeedSequencer

__all__ = [
    "POSTGRES",
    "POSTGRES_RETRIES",
    "Conn",
    "Dialect",
    "FeedSequencer",
    "IssueIdSource",
    "RetryPolicy",
    "release_as_is",
    "retrying",
    "server_settings",
    "translated_errors",
]
