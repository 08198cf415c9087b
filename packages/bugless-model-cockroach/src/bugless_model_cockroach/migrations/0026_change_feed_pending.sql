-- bugless-model-cockroach schema, version 26 (PostgreSQL's 0026 is a
-- reserved no-op): the change feed's pending table.
--
-- A write transaction appends its change here as its last statement, where
-- the PostgreSQL backend updates `change_feed_state.head` (0005): under
-- SERIALIZABLE two overlapping writers cannot both update one row, one of
-- them restarts (40001). Rows here are never updated by writers and each
-- has a random key of its own, so writers do not conflict on this table,
-- and its inserts spread over the key space (no range every write hits).
-- The Model's sequencer (bugless_model_cockroach._sequencer) moves what has
-- committed into `change_feed` at `head + 1 ...`, each issue's changes in
-- the order of their versions, and is the only one to write `head`.
--
-- Valid on PostgreSQL 14+ and CockroachDB 23.2+ (gen_random_uuid() is
-- built into both; arrays).
CREATE TABLE change_feed_pending (
    ticket        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- The columns of `change_feed` but its position (0005).
    committed_at  timestamptz NOT NULL,
    author        text NOT NULL DEFAULT '',
    issue_ids     bigint[] NOT NULL DEFAULT '{}',
    versions      bigint[] NOT NULL DEFAULT '{}',
    component_ids bigint[] NOT NULL DEFAULT '{}'
);
