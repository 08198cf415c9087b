"""The statements only the CockroachDB backend runs, apart from control flow.

Every statement that both databases accept lives once, in
``bugless_model_postgres._queries`` or ``._collection_queries``; these are
the additions. The lease statements are plain SQL both databases run (so
compatibility mode executes them for real); the ones marked *CockroachDB
only* are built here and run only against a CockroachDB server. Syntax
follows the CockroachDB 23.2 SQL reference pages named on each statement.
"""

from __future__ import annotations

#: Tells CockroachDB from PostgreSQL ("CockroachDB CCL v23.2.4 (...)").
SERVER_VERSION = "SELECT version()"
#: Compatibility mode needs SERIALIZABLE, CockroachDB's only default.
DEFAULT_ISOLATION = "SELECT current_setting('default_transaction_isolation')"
CURRENT_DATABASE = "SELECT current_database()"

# ---- leases (CREATE TABLE, INSERT ... ON CONFLICT, UPDATE, in both) ----

#: Take any free node id in 0..$3 for holder $2 for $1 ms, picked at random
#: so replicas starting together rarely race for one; no row when the pick
#: was taken meanwhile (try again) or every node id is held.
TAKE_NODE_LEASE = """
INSERT INTO bugless_leases AS l (name, holder, expires_at)
SELECT 'node:' || g.n::text, $2, now() + $1 * INTERVAL '1 millisecond'
  FROM generate_series(0, $3::int) AS g(n)
 WHERE NOT EXISTS (SELECT 1 FROM bugless_leases o
                    WHERE o.name = 'node:' || g.n::text AND o.expires_at > now())
 ORDER BY random()
 LIMIT 1
ON CONFLICT (name) DO UPDATE
   SET holder = excluded.holder, expires_at = excluded.expires_at
 WHERE l.expires_at <= now()
RETURNING name, fence_ms
"""

# ---- CockroachDB only ----

#: First statement of a read-only search transaction that accepts stale data:
#: reads at the follower-read timestamp (a few seconds ago), which the nearest
#: replica can serve. CockroachDB docs: "SET TRANSACTION" (AS OF SYSTEM TIME)
#: and "Follower Reads" (exact staleness reads, follower_read_timestamp()).
FOLLOWER_READ = "SET TRANSACTION AS OF SYSTEM TIME follower_read_timestamp()"

# ---- the change feed (both; migration 0026 of this package) ----

#: A write transaction's change, appended as its last statement
#: (``Dialect.feed_append``; ``FEED_APPEND``'s parameters): committed_at,
#: author, issue ids, versions, component ids. Returns -1: appended, its
#: position not known until the sequencer numbers it.
FEED_PENDING_APPEND = """
INSERT INTO change_feed_pending (committed_at, author, issue_ids, versions, component_ids)
VALUES ($1, $2, $3::bigint[], $4::bigint[], $5::bigint[])
RETURNING -1
"""

#: Whether a sequencing pass has anything to do (read before it locks).
ANY_PENDING = "SELECT EXISTS (SELECT 1 FROM change_feed_pending)"

#: A pass's first statement: passes of several replicas queue here.
LOCK_HEAD = "SELECT position FROM change_feed_state WHERE name = 'head' FOR UPDATE"

#: What a sequencing pass orders (all of it: a prefix of the order is a batch).
PENDING_CHANGES = """
SELECT ticket, committed_at, issue_ids, versions FROM change_feed_pending
"""

#: Number the pending changes $1 (tickets, in that order) after ``head``, in
#: one statement: they take positions ``head + 1 ...``, leave the pending
#: table, and ``head`` moves past them. Run by the holder of
#: :data:`LOCK_HEAD`'s lock; ``head`` is updated before any row is inserted
#: (the insert reads its new value) all the same. Returns how many were
#: numbered and removed (equal).
SEQUENCE_FEED = """
WITH batch AS (
    SELECT p.ticket, p.committed_at, p.author, p.issue_ids, p.versions, p.component_ids,
           o.ord
      FROM unnest($1::uuid[]) WITH ORDINALITY AS o(ticket, ord)
      JOIN change_feed_pending p ON p.ticket = o.ticket
), counted AS (
    SELECT count(*) AS n FROM batch
), head AS (
    UPDATE change_feed_state SET position = position + (SELECT n FROM counted)
     WHERE name = 'head' AND (SELECT n FROM counted) > 0
    RETURNING position
), numbered AS (
    INSERT INTO change_feed (position, committed_at, author, issue_ids, versions, component_ids)
    SELECT head.position - counted.n + row_number() OVER (ORDER BY batch.ord),
           batch.committed_at, batch.author, batch.issue_ids, batch.versions,
           batch.component_ids
      FROM batch, head, counted
    RETURNING position
), gone AS (
    DELETE FROM change_feed_pending
     WHERE ticket IN (SELECT ticket FROM batch) AND EXISTS (SELECT 1 FROM head)
    RETURNING ticket
)
SELECT (SELECT count(*) FROM numbered) AS numbered, (SELECT count(*) FROM gone) AS gone
"""
