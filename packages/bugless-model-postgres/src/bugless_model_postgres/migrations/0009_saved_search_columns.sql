-- bugless schema: the list columns a saved search is shown with (issue 15).
--
-- Column keys as the web list names them (`id`, `title`, `customfield12`);
-- the Model checks them before storing. Empty means the default columns, so
-- every saved search made before this version keeps showing what it showed.
-- Adding a column with a constant default rewrites nothing on PostgreSQL 11+
-- or CockroachDB.
ALTER TABLE saved_searches ADD COLUMN columns text[] NOT NULL DEFAULT '{}';
