-- bugless schema: the queue of issues whose text vectors migrate makes again.
--
-- 0033 now creates it and queues the issues whose files' descriptions its
-- vectors lack, for `PostgresBackend.migrate` to remake in batches
-- (_text_rebuilds.rebuild). A deployment that applied 0033 before, when it
-- remade them in one UPDATE, has them made and gets the table here, empty;
-- for one that applied 0033 in this run, this finds it made.
--
-- Valid on PostgreSQL 14+ and CockroachDB 23.2+.
CREATE TABLE IF NOT EXISTS issue_text_rebuilds (
    issue_id bigint PRIMARY KEY
);
