-- bugless schema: who is @mentioned where, for `mention:` searches (issue 18).
--
-- One row per issue and lower-case username mentioned in its title or in the
-- current text of its description or a comment (the latest edit of each;
-- redacted text mentions nobody). Filled in the same transaction as every
-- write that changes those texts (bugless_model_postgres._mentions), with the
-- one mention rule the web and the notifier use (bugless_core.mentions).
--
-- That rule is Python; a SQL copy of it here would be a second rule (and
-- CockroachDB's regular expressions lack the look-behind it needs), so the
-- backfill is done by the Model right after migrating: this file queues the
-- issues whose texts contain "@" in `issue_mentions_pending`, and
-- `PostgresBackend.migrate` drains the queue in batches
-- (_mentions.backfill), the same way on both backends. No foreign key:
-- issues are never deleted but by tests dropping whole schemas.
CREATE TABLE issue_mentions (
    issue_id bigint NOT NULL,
    username text NOT NULL,
    PRIMARY KEY (issue_id, username)
);
-- `mention:ann`: the issues naming ann, one index range.
CREATE INDEX issue_mentions_username ON issue_mentions (username, issue_id);

CREATE TABLE issue_mentions_pending (
    issue_id bigint PRIMARY KEY
);
INSERT INTO issue_mentions_pending (issue_id)
SELECT i.id
  FROM issues i
 WHERE strpos(i.title, '@') > 0
    OR EXISTS (SELECT 1 FROM issue_history h
                WHERE h.issue_id = i.id AND strpos(h.comment, '@') > 0);
