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
-- backfill is done by the Model right after migrating: issues whose texts
-- may mention someone are queued in `issue_mentions_pending`, and
-- `PostgresBackend.migrate` drains the queue in batches
-- (_mentions.backfill), the same way on both backends. This file queued the
-- issues with an "@" by one statement over every issue and its history; it
-- queues nothing now, since 0025's rule (which every migrate applying this
-- file applies too) covers those issues and 0028 queues them in batches.
-- No foreign key: issues are never deleted but by tests dropping whole
-- schemas.
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
