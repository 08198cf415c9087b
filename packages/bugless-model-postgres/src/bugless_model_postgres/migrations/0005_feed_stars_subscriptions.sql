-- bugless schema: the change feed, stars, subscriptions and notification
-- settings (issue 16). Valid on PostgreSQL 14+ and CockroachDB 23.2+: plain
-- tables and columns with constant defaults, btree indexes, no triggers.

-- The change feed: one row per committed write transaction, numbered in
-- commit order. A writer appends its row as the last statement of its
-- transaction, taking the position from `change_feed_state.head` with an
-- UPDATE: the row lock is held until commit, so the next writer gets its
-- position only once this one has committed (or rolled back, freeing the
-- same number). Positions are therefore dense and in commit order, and a
-- reader that has seen position n has seen every change up to n: no gap
-- when transactions commit out of id order.
CREATE TABLE change_feed (
    position      bigint PRIMARY KEY,
    committed_at  timestamptz NOT NULL,
    -- Who made the change (opaque user id; empty for the system).
    author        text NOT NULL DEFAULT '',
    -- History entries written, as parallel arrays (issue_ids[i] got
    -- version versions[i]), in the order they were written.
    issue_ids     bigint[] NOT NULL DEFAULT '{}',
    versions      bigint[] NOT NULL DEFAULT '{}',
    -- Components created or changed.
    component_ids bigint[] NOT NULL DEFAULT '{}'
);
CREATE INDEX change_feed_committed_at ON change_feed (committed_at);

-- `head`: the last position handed out. `pruned`: every position up to
-- this one was removed by retention; a reader resuming below it has missed
-- changes and must rebuild.
CREATE TABLE change_feed_state (
    name     text PRIMARY KEY,
    position bigint NOT NULL
);
INSERT INTO change_feed_state (name, position) VALUES ('head', 0), ('pruned', 0);

-- Stars: who starred which issue; issues.star_count is kept with them in
-- the same transaction (sortable, shown on the issue).
CREATE TABLE issue_stars (
    issue_id   bigint NOT NULL REFERENCES issues (id),
    user_id    text NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (issue_id, user_id)
);
CREATE INDEX issue_stars_user ON issue_stars (user_id, issue_id);
ALTER TABLE issues ADD COLUMN star_count bigint NOT NULL DEFAULT 0;
CREATE INDEX issues_star_count ON issues (star_count, id);

-- Subscriptions: to a component (optionally its subtree) or a saved search.
CREATE TABLE component_subscriptions (
    user_id          text NOT NULL,
    component_id     bigint NOT NULL REFERENCES components (id),
    include_subtree  boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL,
    PRIMARY KEY (user_id, component_id)
);
CREATE INDEX component_subscriptions_component ON component_subscriptions (component_id);

CREATE TABLE saved_search_subscriptions (
    user_id         text NOT NULL,
    saved_search_id bigint NOT NULL REFERENCES saved_searches (id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL,
    PRIMARY KEY (user_id, saved_search_id)
);
CREATE INDEX saved_search_subscriptions_search
    ON saved_search_subscriptions (saved_search_id);

-- Per-person notification settings (bugless.v1.NotificationSettings as
-- JSON) and muted issues.
CREATE TABLE notification_settings (
    user_id     text PRIMARY KEY,
    settings    jsonb NOT NULL DEFAULT '{}',
    modified_at timestamptz NOT NULL
);
CREATE TABLE issue_mutes (
    user_id    text NOT NULL,
    issue_id   bigint NOT NULL REFERENCES issues (id),
    created_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, issue_id)
);
CREATE INDEX issue_mutes_issue ON issue_mutes (issue_id);
