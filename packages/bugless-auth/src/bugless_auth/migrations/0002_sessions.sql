-- Server-side sessions and the shared sign-in throttle.

-- One row per issued token: session_id is the token's `jti`. A token is valid
-- only while its row exists, is not revoked and has not expired, so sign-out,
-- "sign out everywhere", disabling a user and revocation reach every replica
-- at once (the list is here, not in any replica's memory). Tokens issued
-- before this migration have no row and stop working: everyone signs in once.
CREATE TABLE sessions (
    session_id     text PRIMARY KEY,
    user_id        text NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    authenticator  text NOT NULL,
    client_address text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    revoked_reason text NOT NULL DEFAULT ''
);
CREATE INDEX sessions_live_by_user ON sessions (user_id) WHERE revoked_at IS NULL;
CREATE INDEX sessions_expires_at ON sessions (expires_at);

-- Failed-sign-in token buckets, shared by every Authenticator replica.
-- bucket is 'pair:<username>\n<address>', 'user:<username>' or
-- 'address:<address>'; tokens are what was left at updated_at (refill is
-- computed from the elapsed time). A bucket untouched for a whole window is
-- full again and its row is deleted.
CREATE TABLE login_throttle (
    bucket     text PRIMARY KEY,
    tokens     double precision NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_throttle_updated_at ON login_throttle (updated_at);
