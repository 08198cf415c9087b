-- An index for "which sessions ended in the last few seconds" (issue 15).
--
-- Every Model replica asks the Authenticator for the sessions ended within an
-- identity assertion's lifetime, every few seconds
-- (SessionStore.revoked_within: revoked_at > now() - interval AND expires_at >
-- now()). Without an index that is a scan of every session row, live or kept
-- for audit, on every poll of every replica. Most rows are never revoked, so
-- the index holds only the revoked ones (a partial index: CockroachDB has
-- them too), and the range on revoked_at reads just the few recent entries.
CREATE INDEX sessions_recently_ended ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;
