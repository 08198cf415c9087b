-- The query each saved-search subscription was seeded with. A subscription
-- was seeded once, when the notifier first saw it; an edit of its query
-- kept the old query's matches, so the first change to each issue of the
-- new query's was mailed as a new match though it had matched all along.
-- The notifier now seeds a subscription again when its query is not the
-- one recorded here. NULL: seeded by an earlier notifier, query not known;
-- taken as the current one and recorded at the next round (a notifier of
-- the earlier release sharing the queue during a rollout inserts NULL).

ALTER TABLE saved_search_seen ADD COLUMN query text;
