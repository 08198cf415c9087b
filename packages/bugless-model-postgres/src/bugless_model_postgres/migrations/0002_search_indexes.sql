-- bugless schema 2: indexes that let searches narrow and count without heap
-- visits (bench/JOURNAL.md, "Search performance fixes").
-- Valid on PostgreSQL 14+ and CockroachDB 23.2+: plain btree, INCLUDE,
-- partial predicates; no extensions, no CONCURRENTLY (this file runs in the
-- migration transaction).
--
-- User filters with the status filter they are nearly always combined with,
-- the id (default order and keyset) and component_id (the visibility join)
-- included: `assignee:me is:open` pages and counts are index-only scans.
-- Each replaces the single-column index on the same leading column (same
-- predicate), so a write still maintains one index per user column.
CREATE INDEX issues_assignee_status ON issues (assignee, status, id)
    INCLUDE (component_id) WHERE assignee <> '';
CREATE INDEX issues_reporter_status ON issues (reporter, status, id)
    INCLUDE (component_id);
CREATE INDEX issues_verifier_status ON issues (verifier, status, id)
    INCLUDE (component_id) WHERE verifier <> '';
DROP INDEX issues_assignee;
DROP INDEX issues_reporter;
DROP INDEX issues_verifier;

-- Component (a subtree compiles to a list of component ids) with the two
-- filters most often added to it: `c:X+ is:open p<=p1 word` ANDs this bitmap
-- with the text GIN instead of a 14%-of-the-table priority bitmap, and
-- `c:X+ is:open` counts are index-only scans.
CREATE INDEX issues_component_status ON issues (component_id, status, priority, id);
