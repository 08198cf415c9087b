-- bugless schema: issues are queued for their mentions by a resumable scan, in batches.
--
-- 0011, 0023, 0025 and 0027 queued the issues whose mentions a new reading
-- may change with one INSERT ... SELECT over every issue and its history, in
-- the migration's one transaction. On a large table that transaction holds
-- its snapshot for the whole scan (PostgreSQL) while the old replicas of a
-- rolling upgrade write, and on CockroachDB it may restart over and over
-- under that load, or exceed its size limits, failing the upgrade. Those
-- files now queue nothing (their statements left them: the migration engine
-- keeps no checksum, so a deployment that applied them keeps what they did,
-- and one that has not finds their schema changes only). What remains to
-- queue is recorded here, and `PostgresBackend.migrate` runs it right after
-- migrating (_mentions.backfill runs _mention_scans.queue_registered, then
-- recomputes the queue): batches of issue ids in ascending order, each one
-- short transaction that queues its range and moves `scanned_to`, so a
-- migrate stopped part-way continues where it stopped.
--
-- Which scan this migrate needs follows from the files it applied: the
-- ledger records each file with its transaction's now(), so those it applied
-- in this transaction are the ones whose statements were left out. 0025's
-- rule (an "@" or an "&" anywhere) covers the other three (each queues only
-- issues with an "@"), and every migrate that applies 0011 or 0023 applies
-- 0025 with them (the engine applies all that is pending), so 0025's scan is
-- recorded when 0025 was applied now, 0027's when only 0027 was (0025 ran
-- before, its statement included). A scan ends at the highest issue id
-- there is now (`through_id`), what the one statement would have read;
-- issues made after it are written by this release's code. An empty table
-- needs no scan.
--
-- Valid on PostgreSQL 14+ and CockroachDB 23.2+ (now() is the transaction's
-- timestamp on both).
CREATE TABLE issue_mention_scans (
    -- The migration whose rule (bugless_model_postgres._mention_scans) queues.
    version    integer PRIMARY KEY CHECK (version IN (25, 27)),
    -- Every issue with an id up to this one has been queued or passed over.
    scanned_to bigint NOT NULL DEFAULT 0,
    -- The scan ends at this issue id.
    through_id bigint NOT NULL
);
INSERT INTO issue_mention_scans (version, through_id)
SELECT m.version, (SELECT max(i.id) FROM issues i)
  FROM schema_migrations m
 WHERE m.applied_at = now()
   AND (m.version = 25
        OR (m.version = 27
            AND NOT EXISTS (SELECT 1 FROM schema_migrations e
                             WHERE e.version = 25 AND e.applied_at = now())))
   AND EXISTS (SELECT 1 FROM issues);
