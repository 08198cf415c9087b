-- The saved-search subscriptions the notifier has seeded: their matches
-- were recorded, without mailing, the first time it saw them, so the first
-- change to an issue that matched before someone subscribed is not mailed
-- as a new match. Subscriptions the notifier followed before this table
-- have their matches already: they count as seeded.

CREATE TABLE saved_search_seen (
    saved_search_id bigint NOT NULL,
    user_id         text NOT NULL,
    PRIMARY KEY (saved_search_id, user_id)
);

INSERT INTO saved_search_seen
SELECT DISTINCT saved_search_id, user_id FROM saved_search_matches;
