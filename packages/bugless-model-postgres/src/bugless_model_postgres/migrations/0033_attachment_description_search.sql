-- bugless schema: a file's description is searched and read for mentions.
--
-- 0031 gave an imported file the description its source tracker showed
-- beside it (Trac's, Redmine's): text a person wrote, which before 0031
-- was the comment of the entry attaching the file, found by full-text
-- search, `comment:` and `mention:`. Since then the Model builds the
-- comment vectors (issues.comments_tsv, text_tsv) with each entry's comment
-- followed by the descriptions of the files it attached, and reads the
-- descriptions for the issue's mentions (_imports._all_text, _edits,
-- _mentions); a redaction of the file takes its description out of both.
--
-- Issues imported by the release of 0031 before this one lack them. This
-- file queues them (issue_text_rebuilds), and `PostgresBackend.migrate`
-- makes their vectors again right after migrating (_text_rebuilds.rebuild):
-- from the current texts in that order (the latest edit of each entry,
-- redacted ones blank, then its files' descriptions), as an edit on
-- CockroachDB makes them, in batches of issues, each one short transaction
-- that locks its issues as writers do; stopped part-way, the next migrate
-- goes on. Their stored entry vectors (0012) hold comments only and stay.
-- The issues whose descriptions hold an "@" are queued for their mentions,
-- which the same migrate recomputes (_mentions.backfill). Neither changes
-- an issue's version or its feed: the vectors and mentions are what the
-- stored texts say.
--
-- Until a later release this file remade the vectors itself, with one
-- UPDATE of every such issue in the migration's transaction: row locks held
-- on those issues, against the writes of the old replicas still serving,
-- until every file of the run committed. The engine keeps no checksum, so a
-- deployment that applied it then keeps what it did; 0034 gives it the
-- (empty) queue table this file now creates.
--
-- Issues with a redacted file are queued too: a replica of 0031's release
-- redacting a file during the rollout blanks its description but leaves it
-- in the vectors and mentions, and running this file's statements again
-- after the rollout, then migrate, removes it (docs/upgrades.md). Only those
-- issues are read: a scan of `attachments` (no index on description); the
-- rebuild then reads the history of its batch's issues.
--
-- Valid on PostgreSQL 14+ and CockroachDB 23.2+.
CREATE TABLE IF NOT EXISTS issue_text_rebuilds (
    issue_id bigint PRIMARY KEY
);
INSERT INTO issue_text_rebuilds (issue_id)
SELECT DISTINCT issue_id FROM attachments WHERE description <> '' OR redacted
ON CONFLICT DO NOTHING;
INSERT INTO issue_mentions_pending (issue_id)
SELECT DISTINCT issue_id FROM attachments WHERE strpos(description, '@') > 0 OR redacted
ON CONFLICT DO NOTHING;
