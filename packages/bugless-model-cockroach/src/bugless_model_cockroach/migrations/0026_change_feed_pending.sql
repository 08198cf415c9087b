-- bugless-model-cockroach schema, version 26 (PostgreSQL's 0026 is a
-- reserved no-op): the change feed's pending table.
--
-- A write transaction appends its change here as its last statement, where
-- the PostgreSQL backend updates `change_feed_state.head` (0005): under
-- SERIALIZABLE two overlapping writers cannot both update one row, one of
-- them restarts (40001). Rows here are never updated by writers, and each
-- has a key of its own, so writers do not conflict on this table.
-- The Model's sequencer (bugless_model_cockroach._sequencer) moves what has
-- committed into `change_feed` at `head + 1 ...` in `ticket` order, and is
-- the only one to write `head`.
--
-- `ticket` is taken from a sequence when the row is inserted, after every
-- other row the transaction wrote. A later change of the same issue waited
-- for the earlier one's commit (they write the issue's row), so it takes a
-- greater ticket: numbering in ticket order keeps each issue's changes in
-- commit order (the README, "The change feed", says why neither a clock
-- nor cluster_logical_timestamp() was used). Sequences are not
-- transactional on either database: taking a value never conflicts.
--
-- Valid on PostgreSQL 14+ and CockroachDB 23.2+ (CREATE SEQUENCE, a
-- nextval default, arrays).
CREATE SEQUENCE change_feed_tickets;
CREATE TABLE change_feed_pending (
    ticket        bigint PRIMARY KEY DEFAULT nextval('change_feed_tickets'),
    -- The columns of `change_feed` but its position (0005).
    committed_at  timestamptz NOT NULL,
    author        text NOT NULL DEFAULT '',
    issue_ids     bigint[] NOT NULL DEFAULT '{}',
    versions      bigint[] NOT NULL DEFAULT '{}',
    component_ids bigint[] NOT NULL DEFAULT '{}'
);
