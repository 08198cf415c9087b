-- The users' change feed (issue 23): which users changed, in commit order.
--
-- Frontends and every Authenticator replica cache users; they used to re-ask
-- after a TTL (5 s at a frontend, 30 s here), so a rename showed up to ~35 s
-- late and most GetUsers calls were re-asks of people who had not changed.
-- Now every transaction that writes a users row (a sign-in that changed the
-- directory's data, an admin call, the directory re-sync, an import's
-- placeholders and merges) takes the next version from `head` as its last
-- statement and logs the ids it changed under it (the placeholders merged
-- into a changed account too: they answer with its data). The UPDATE of
-- `head` holds the row lock until commit, so versions are handed out in
-- commit order: a reader that has handled version n misses nothing by reading
-- `version > n` (the Model's change feed contract). Caches forget what the
-- feed names and keep everyone else (bugless_core.user_changes).
--
-- `pruned`: every version up to it was removed by retention; a reader behind
-- it is told to start over (GetUserChanges.reset). Versions start at 1, so
-- 0 is never a version anything was read at.
CREATE TABLE user_changes (
    version    bigint NOT NULL,
    user_id    text NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (version, user_id)
);
CREATE TABLE user_changes_state (
    name    text PRIMARY KEY,
    version bigint NOT NULL
);
INSERT INTO user_changes_state (name, version) VALUES ('head', 1), ('pruned', 1);
