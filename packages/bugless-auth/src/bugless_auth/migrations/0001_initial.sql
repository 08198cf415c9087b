-- The Authenticator's own schema: who everyone is, under which opaque id.

-- One row per person or bot. user_id is minted here and never changes; the
-- other columns are the latest the directory told us (refreshed on each login).
CREATE TABLE users (
    user_id      text PRIMARY KEY,
    username     text NOT NULL,
    display_name text NOT NULL DEFAULT '',
    email        text NOT NULL DEFAULT '',
    groups       text[] NOT NULL DEFAULT '{}',
    disabled     boolean NOT NULL DEFAULT false,
    bot          boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_username_key ON users (lower(username));
CREATE INDEX users_username_prefix ON users (lower(username) text_pattern_ops);
CREATE INDEX users_display_name_prefix ON users (lower(display_name) text_pattern_ops);
CREATE INDEX users_email_prefix ON users (lower(email) text_pattern_ops);

-- External subject (ldap:<entryUUID>, oidc:<iss>#<sub>, tls:cn=<CN>, local:<id>)
-- to user id: the mapping that makes renames harmless.
CREATE TABLE external_subjects (
    subject       text PRIMARY KEY,
    user_id       text NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    authenticator text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz
);
CREATE INDEX external_subjects_user_id ON external_subjects (user_id);

-- Passwords of the local backend's users (argon2id PHC strings).
CREATE TABLE local_credentials (
    user_id       text PRIMARY KEY REFERENCES users (user_id) ON DELETE CASCADE,
    password_hash text NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
