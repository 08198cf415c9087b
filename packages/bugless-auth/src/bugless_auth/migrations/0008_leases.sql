-- Named, expiring leases (bugless_core.leases), so that only one replica
-- runs the directory re-sync of a backend at a time.
--
-- Every Authenticator replica used to re-read the whole directory every
-- resync_seconds: with N replicas the directory saw N sweeps per interval and
-- each change was applied N times. A replica now runs a round only while it
-- holds the lease "directory-resync:<backend>" in this table (taken again
-- each round, lasting 1.5 intervals, given back on a clean stop), so a
-- replica that dies hands the re-sync over within two intervals.
--
-- On CockroachDB the migration lock already created this table (it leases
-- "migrate" here); IF NOT EXISTS keeps this file the same for both.
CREATE TABLE IF NOT EXISTS bugless_leases (
    name       text PRIMARY KEY,
    holder     text NOT NULL,
    expires_at timestamptz NOT NULL,
    fence_ms   bigint NOT NULL DEFAULT 0
);
