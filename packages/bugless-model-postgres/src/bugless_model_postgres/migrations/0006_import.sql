-- bugless schema: issues imported from other trackers (issue 21; number 0007
-- in the plan, numbered here after the files main has). Valid on PostgreSQL
-- 14+ and CockroachDB 23.2+: columns with constant defaults and a partial
-- unique btree index; no advisory locks, nothing that needs READ COMMITTED.

-- The source's reference ("trac:1234", "github:org/repo#56"); '' for issues
-- made here ("none" is '' as everywhere in this schema). Unique among
-- imported issues: ImportIssue finds an issue imported before by it, which
-- is what makes an import idempotent and resumable.
ALTER TABLE issues
    ADD COLUMN external_id text NOT NULL DEFAULT '',
    -- How many items of the source's history ImportIssue has consumed
    -- (written as entries, or found to change nothing): a re-import appends
    -- only the items beyond it.
    ADD COLUMN import_position integer NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX issues_external_id ON issues (external_id) WHERE external_id <> '';

-- Entries ImportIssue wrote carry the issue's external reference: the
-- timeline's "imported from ..." marker. '' for native entries.
ALTER TABLE issue_history ADD COLUMN imported_from text NOT NULL DEFAULT '';
