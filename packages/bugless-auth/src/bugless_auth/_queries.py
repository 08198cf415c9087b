"""SQL of the identity store, kept apart from its control flow.

Every statement uses unqualified names: the pool sets ``search_path`` to the
Authenticator's schema on each connection.
"""

from __future__ import annotations

USER_COLUMNS = "user_id, username, display_name, email, groups, disabled, bot"

USERS_BY_IDS = f"SELECT {USER_COLUMNS} FROM users WHERE user_id = ANY($1::text[])"
USERS_BY_USERNAMES = f"SELECT {USER_COLUMNS} FROM users WHERE lower(username) = ANY($1::text[])"
USER_BY_USERNAME = f"SELECT {USER_COLUMNS} FROM users WHERE lower(username) = lower($1)"

SUGGEST = f"""
SELECT {USER_COLUMNS} FROM users
WHERE NOT disabled
  AND (lower(username) LIKE $1 ESCAPE '\\'
       OR lower(display_name) LIKE $1 ESCAPE '\\'
       OR lower(email) LIKE $1 ESCAPE '\\')
ORDER BY lower(username)
LIMIT $2
"""

USER_OF_SUBJECT = "SELECT user_id FROM external_subjects WHERE subject = $1 FOR UPDATE"

INSERT_USER = """
INSERT INTO users (user_id, username, display_name, email, groups, bot)
VALUES ($1, $2, $3, $4, $5, $6)
"""

REFRESH_USER = f"""
UPDATE users
SET username = $2, display_name = $3, email = $4, groups = $5, bot = $6, updated_at = now()
WHERE user_id = $1
RETURNING {USER_COLUMNS}
"""

INSERT_SUBJECT = """
INSERT INTO external_subjects (subject, user_id, authenticator, last_login_at)
VALUES ($1, $2, $3, now())
"""

TOUCH_SUBJECT = "UPDATE external_subjects SET last_login_at = now() WHERE subject = $1"

USERNAME_HOLDER = """
SELECT u.user_id, ARRAY(SELECT s.subject FROM external_subjects s WHERE s.user_id = u.user_id)
FROM users u
WHERE lower(u.username) = lower($1)
FOR UPDATE
"""

RELEASE_USERNAME = "UPDATE users SET username = $2, updated_at = now() WHERE user_id = $1"

LOCAL_CREDENTIALS = f"""
SELECT {", ".join("u." + c for c in USER_COLUMNS.split(", "))}, c.password_hash
FROM users u JOIN local_credentials c ON c.user_id = u.user_id
WHERE lower(u.username) = lower($1)
"""

INSERT_CREDENTIALS = "INSERT INTO local_credentials (user_id, password_hash) VALUES ($1, $2)"

UPDATE_CREDENTIALS = """
UPDATE local_credentials SET password_hash = $2, updated_at = now() WHERE user_id = $1
"""

SET_DISABLED = f"""
UPDATE users SET disabled = $2, updated_at = now() WHERE lower(username) = lower($1)
RETURNING {USER_COLUMNS}
"""

PING = "SELECT 1"
