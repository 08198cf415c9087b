-- bugless schema: a version of the saved-search subscriptions as a whole.
--
-- The notifier lists every subscription before each round it reads the
-- feed (about every two seconds, idle or not), to seed new ones and judge
-- each batch against the current list: with tens of thousands that was a
-- steady load on the Model for nothing. The one row here moves in the
-- transaction of every subscribe, unsubscribe, and edit or deletion of a
-- saved search; ListSavedSearchSubscriptions answers it, and a caller that
-- holds the list of the current version gets no rows (changed_after).
-- It starts at 1: a version of 0 is a Model before this file.
--
-- Valid on PostgreSQL 14+ and CockroachDB 23.2+.
CREATE TABLE saved_search_subscriptions_version (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    version  bigint NOT NULL
);
INSERT INTO saved_search_subscriptions_version (only_row, version) VALUES (true, 1);
