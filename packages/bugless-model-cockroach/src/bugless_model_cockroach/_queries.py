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
