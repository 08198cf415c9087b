-- An index for "which placeholders were merged into this account" (issue 21).
--
-- Every look-up of users by username (each search naming people:
-- `reporter:ann`) answers with the ids of the placeholders merged into each
-- account (USERS_BY_USERNAMES, merged_ids), so a search matches the history
-- those placeholders wrote. Without an index that is a scan of every user
-- per name looked up. Only merged placeholders have merged_into set, so the
-- index holds just those (a partial index: CockroachDB has them too).
CREATE INDEX users_merged_into ON users (merged_into) WHERE merged_into <> '';
