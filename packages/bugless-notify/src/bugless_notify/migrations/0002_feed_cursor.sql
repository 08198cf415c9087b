-- The notifier's position in the Model's change feed, and what each
-- saved-search subscription matched (to notify on newly matching and no
-- longer matching issues).

-- One row per consumer (``main``). The consumer advances it in the same
-- transaction that enqueues the deliveries of the changes it covers, under
-- FOR UPDATE: both commit or neither does, and two replicas that computed the
-- same batch cannot both commit it (the second finds the position moved).
CREATE TABLE feed_cursor (
    name       text PRIMARY KEY,
    position   bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE saved_search_matches (
    saved_search_id bigint NOT NULL,
    user_id         text NOT NULL,
    issue_id        bigint NOT NULL,
    PRIMARY KEY (saved_search_id, user_id, issue_id)
);
