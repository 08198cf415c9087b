-- bugless schema: a component's own name, folded, looked up through an index.
--
-- A search naming a component (`component:Rocket`, `c:Rocket+`) and the
-- check of the names a query's first page or a watch makes compare each
-- name with the last segment of components.path_key (the name folded as
-- names compare, migration 0020): `_search_refs.NAMED`. Nothing indexed
-- that segment, so every such term read the whole components table, once
-- per name and per page; a path (`Rocket>Engine`) is compared as the whole
-- path_key, which its unique index (0001) serves.
--
-- The components table is small next to the issues (a deployment has
-- thousands, not millions): building the index reads it once, in the
-- migration's transaction. IF NOT EXISTS: an operator who built it
-- beforehand (CREATE INDEX CONCURRENTLY, the same statement) keeps theirs.
--
-- Valid on PostgreSQL 14+ and CockroachDB 23.2+ (expression indexes; an
-- array subscript and cardinality() are immutable).
CREATE INDEX IF NOT EXISTS components_own_name_key
    ON components ((path_key[cardinality(path_key)]));
