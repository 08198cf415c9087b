"""SQL of the identity store, kept apart from its control flow.

Every statement uses unqualified names: the pool sets ``search_path`` to the
Authenticator's schema on each connection.
"""

from __future__ import annotations

USER_COLUMNS = "user_id, username, display_name, email, groups, disabled, bot, placeholder"

#: Joins to each user ``u`` the account ``t`` that answers for them: a
#: placeholder merged into a real account is that account, anyone else themself.
ACCOUNT_OF_U = """
JOIN users t ON t.user_id = (CASE WHEN u.merged_into <> '' THEN u.merged_into ELSE u.user_id END)
"""

#: Users by id; a placeholder merged into a real account answers with that
#: account's data under its own id (``alias_of`` names the account).
USERS_BY_IDS = f"""
SELECT u.user_id, t.username, t.display_name, t.email, t.groups, t.disabled, t.bot,
       u.placeholder AND u.merged_into = '' AS placeholder, u.merged_into AS alias_of
FROM users u {ACCOUNT_OF_U}
WHERE u.user_id = ANY($1::text[])
"""
#: Users by username key ($1: ``username_key`` of each name, migration 0011),
#: each with the ids of the placeholders merged into it: a search by name
#: resolves to all of them (``merged_ids``).
USERS_BY_USERNAMES = f"""
SELECT {USER_COLUMNS},
       ARRAY(SELECT m.user_id FROM users m
             WHERE m.merged_into = users.user_id AND m.merged_into <> ''  -- users_merged_into
             ORDER BY m.user_id) AS merged_ids
FROM users WHERE username_key = ANY($1::text[])
"""
#: The user whose username key is $1 (every statement naming a user by
#: username takes its ``username_key``).
USER_BY_USERNAME = f"SELECT {USER_COLUMNS} FROM users WHERE username_key = $1"

#: Enabled users a prefix $1 (folded by ``str.casefold``, LIKE-escaped, ``%``
#: appended) begins the username, display name or email of, as folded
#: (migration 0010: SQL's ``lower()`` folds ASCII only under the C locale).
SUGGEST = f"""
SELECT {USER_COLUMNS} FROM users
WHERE NOT disabled AND NOT placeholder
  AND (username_fold LIKE $1 ESCAPE '\\'
       OR display_name_fold LIKE $1 ESCAPE '\\'
       OR email_fold LIKE $1 ESCAPE '\\')
ORDER BY username_fold
LIMIT $2
"""

USER_OF_SUBJECT = "SELECT user_id FROM external_subjects WHERE subject = $1 FOR UPDATE"

#: A user; $7 the username's key, $8-$10 the username, display name and email
#: folded (``name_keys.derived_names``).
INSERT_USER = """
INSERT INTO users (user_id, username, display_name, email, groups, bot,
                   username_key, username_fold, display_name_fold, email_fold)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
RETURNING user_id
"""

#: What the directory says of user $1 now, if it differs from what is stored
#: (no row otherwise: a sign-in that changed nothing is no change to log),
#: or if its username key is missing or stale (written by a replica of the
#: release before migration 0011).
REFRESH_USER = f"""
UPDATE users
SET username = $2, display_name = $3, email = $4, groups = $5, bot = $6, updated_at = now(),
    username_key = $7, username_fold = $8, display_name_fold = $9, email_fold = $10
WHERE user_id = $1
  AND (username IS DISTINCT FROM $2 OR display_name IS DISTINCT FROM $3
       OR email IS DISTINCT FROM $4 OR groups IS DISTINCT FROM $5::text[]
       OR bot IS DISTINCT FROM $6 OR username_key IS DISTINCT FROM $7)
RETURNING {USER_COLUMNS}
"""
USER_BY_ID = f"SELECT {USER_COLUMNS} FROM users WHERE user_id = $1"
#: The user whose username key is $1, with the authenticators of their
#: subjects (none for an import's placeholder): why a local-only change is refused.
AUTHENTICATORS_OF_USERNAME = """
SELECT u.user_id,
       ARRAY(SELECT DISTINCT s.authenticator FROM external_subjects s
             WHERE s.user_id = u.user_id ORDER BY 1) AS authenticators
FROM users u WHERE u.username_key = $1
"""
#: How many enabled, real users each group of $1 has (0 for one nobody is in),
#: one row per distinct name. Each group's count reads the partial inverted
#: index of enabled, real users' groups (migration 0017, ``users_by_group``),
#: whose predicate the join repeats so the planner can use it, not every user.
COUNT_GROUP_MEMBERS = """
SELECT g.name AS group_name, count(u.user_id)::int AS members,
       (count(u.user_id) FILTER (WHERE NOT EXISTS (
           SELECT 1 FROM external_subjects s
           WHERE s.user_id = u.user_id AND s.authenticator = ANY($2::text[])
       )))::int AS outside
FROM (SELECT DISTINCT unnest($1::text[]) AS name) g
LEFT JOIN users u ON u.groups @> ARRAY[g.name] AND NOT u.disabled AND NOT u.placeholder
GROUP BY g.name
"""
#: Up to $2 enabled, real members of each group of $1, by user id (one row per
#: membership; a group with more than $2 - 1 rows is too big to list).
GROUP_MEMBER_IDS = """
SELECT g.name AS group_name, m.user_id
FROM (SELECT DISTINCT unnest($1::text[]) AS name) g
CROSS JOIN LATERAL (
    SELECT u.user_id FROM users u
    WHERE u.groups @> ARRAY[g.name] AND NOT u.disabled AND NOT u.placeholder
    ORDER BY u.user_id LIMIT $2
) m
"""
#: User $1's groups before a refresh, their row locked until the commit.
GROUPS_FOR_UPDATE = "SELECT groups FROM users WHERE user_id = $1 FOR UPDATE"

INSERT_SUBJECT = """
INSERT INTO external_subjects (subject, user_id, authenticator, last_login_at)
VALUES ($1, $2, $3, now())
"""

TOUCH_SUBJECT = "UPDATE external_subjects SET last_login_at = now() WHERE subject = $1"

#: Subject $1 is now user $2's (a tls mapping entry whose username another user holds).
MOVE_SUBJECT = "UPDATE external_subjects SET user_id = $2 WHERE subject = $1"

#: User $1's username key (locked), its subjects other than $2, and its username
#: (:func:`bugless_auth.username_holders.entry_user`).
NAME_AND_OTHER_SUBJECTS = """
SELECT u.username_key,
       ARRAY(SELECT s.subject FROM external_subjects s
             WHERE s.user_id = u.user_id AND s.subject <> $2),
       u.username
FROM users u
WHERE u.user_id = $1
FOR UPDATE
"""

#: The user holding username key $1 (locked), their subjects, whether they
#: are an import's placeholder and whether a bot
#: (:mod:`bugless_auth.username_holders`).
USERNAME_HOLDER = """
SELECT u.user_id, ARRAY(SELECT s.subject FROM external_subjects s WHERE s.user_id = u.user_id),
       u.placeholder, u.bot
FROM users u
WHERE u.username_key = $1
FOR UPDATE
"""

RELEASE_USERNAME = """
UPDATE users SET username = $2, username_key = $3, username_fold = $4, updated_at = now()
WHERE user_id = $1
RETURNING user_id
"""

LOCAL_CREDENTIALS = f"""
SELECT {", ".join("u." + c for c in USER_COLUMNS.split(", "))}, c.password_hash
FROM users u JOIN local_credentials c ON c.user_id = u.user_id
WHERE u.username_key = $1
"""

#: The local user spelt exactly $1 whose username has no key yet (migration
#: 0011's fill refused it: a keyed user has its key), with its password hash.
UNKEYED_LOCAL_CREDENTIALS = f"""
SELECT {", ".join("u." + c for c in USER_COLUMNS.split(", "))}, c.password_hash
FROM users u JOIN local_credentials c ON c.user_id = u.user_id
WHERE u.username_key IS NULL AND u.username = $1
"""

INSERT_CREDENTIALS = "INSERT INTO local_credentials (user_id, password_hash) VALUES ($1, $2)"

UPDATE_CREDENTIALS = """
UPDATE local_credentials SET password_hash = $2, updated_at = now() WHERE user_id = $1
"""

#: Disable (or re-enable) the user called $1 (a username key). Run only by
#: :mod:`bugless_auth.disabling`, in the transaction that also ends the user's
#: sessions and certificates: a row disabled alone leaves them live.
SET_DISABLED = f"""
UPDATE users SET disabled = $2, directory_disabled = false, updated_at = now()
WHERE username_key = $1
RETURNING {USER_COLUMNS}
"""

# ---- import (issue 21) ----

#: Real accounts (no placeholders) whose e-mail is one of $1 as folded by
#: ``str.casefold`` (migration 0010's ``email_fold``): a superset of the
#: addresses equal by ``username_key``, which the caller keeps (the database
#: never decides a case rule; its ``lower()`` is ASCII-only under the C locale).
REAL_USERS_BY_EMAIL = f"""
SELECT {USER_COLUMNS} FROM users
WHERE NOT placeholder AND email <> '' AND email_fold = ANY($1::text[])
ORDER BY disabled, created_at
"""
REAL_USERS_BY_USERNAME = f"""
SELECT {USER_COLUMNS} FROM users WHERE NOT placeholder AND username_key = ANY($1::text[])
"""

#: Placeholders already made for subjects $1 (``import:<source>:<key>``).
PLACEHOLDERS_OF_SUBJECTS = f"""
SELECT s.subject, {", ".join("u." + c for c in USER_COLUMNS.split(", "))}
FROM external_subjects s JOIN users u ON u.user_id = s.user_id
WHERE s.subject = ANY($1::text[])
"""

INSERT_PLACEHOLDER = """
INSERT INTO users (user_id, username, display_name, email, placeholder,
                   username_key, username_fold, display_name_fold, email_fold)
VALUES ($1, $2, $3, $4, true, $5, $6, $7, $8)
RETURNING user_id
"""

USERNAME_TAKEN = "SELECT EXISTS (SELECT 1 FROM users WHERE username_key = $1)"
#: The id of the user whose username key is $1, if any (locked until the commit).
USER_ID_OF_USERNAME_KEY = "SELECT user_id FROM users WHERE username_key = $1 FOR UPDATE"

#: The account the placeholder $1 is merged into ('' while it is not), locked until the commit.
MERGED_INTO = "SELECT merged_into FROM users WHERE user_id = $1 FOR UPDATE"

MERGE_PLACEHOLDER = """
UPDATE users SET merged_into = $2, updated_at = now() WHERE user_id = $1 AND placeholder
RETURNING user_id
"""

# ---- directory re-sync ----

#: The subjects of one authenticator's users, after subject $2, $3 at a time:
#: what the re-sync asks the directory about (placeholders never signed in).
SUBJECTS_OF = """
SELECT s.subject, s.user_id FROM external_subjects s
WHERE s.authenticator = $1 AND s.subject > $2
ORDER BY s.subject
LIMIT $3
"""

#: The directory no longer lists user $1: disable them, unless already disabled.
#: Run only by :mod:`bugless_auth.disabling`, as :data:`SET_DISABLED`.
DIRECTORY_DISABLE = f"""
UPDATE users SET disabled = true, directory_disabled = true, updated_at = now()
WHERE user_id = $1 AND NOT disabled
RETURNING {USER_COLUMNS}
"""

#: The directory lists user $1 again: undo only a disable the re-sync made.
DIRECTORY_ENABLE = f"""
UPDATE users SET disabled = false, directory_disabled = false, updated_at = now()
WHERE user_id = $1 AND directory_disabled
RETURNING {USER_COLUMNS}
"""

#: Users whose names migration 0010 left unfolded (made before it, or by a
#: replica of the release before it since).
UNFOLDED_USERS = """
SELECT user_id, username, display_name, email FROM users WHERE username_fold IS NULL LIMIT $1
"""
#: Users $1 named $2-$4 take folds $5-$7, unless renamed or folded since.
SET_FOLDS = """
UPDATE users u
   SET username_fold = k.uf, display_name_fold = k.df, email_fold = k.ef
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
              $7::text[]) AS k(id, username, display_name, email, uf, df, ef)
 WHERE u.user_id = k.id AND u.username = k.username AND u.display_name = k.display_name
   AND u.email = k.email AND u.username_fold IS NULL
RETURNING u.user_id
"""

#: Users whose username key may be missing or stale (migration 0011), after
#: user id $1, $2 at a time. SQL's ``lower()`` only narrows the scan (a key
#: equal to it is one Python's rule gave, unless the database's folds more);
#: :func:`bugless_auth.name_keys.key_usernames` decides in Python.
UNKEYED_USERS = """
SELECT user_id, username, username_key FROM users
WHERE user_id > $1 AND username_key IS DISTINCT FROM lower(username)
ORDER BY user_id
LIMIT $2
"""
#: Which of keys $1 users hold, and who (the clash check before keying).
USERNAME_KEY_HOLDERS = """
SELECT user_id, username, username_key FROM users WHERE username_key = ANY($1::text[])
"""
#: Users $1 named $2 lose their stale keys $3 (so that keys can move between them).
CLEAR_USERNAME_KEYS = """
UPDATE users u SET username_key = NULL
  FROM unnest($1::text[], $2::text[], $3::text[]) AS k(id, username, stale)
 WHERE u.user_id = k.id AND u.username = k.username AND u.username_key = k.stale
RETURNING u.user_id
"""
#: Users $1 named $2 and still unkeyed take keys $3.
SET_USERNAME_KEYS = """
UPDATE users u SET username_key = k.key
  FROM unnest($1::text[], $2::text[], $3::text[]) AS k(id, username, key)
 WHERE u.user_id = k.id AND u.username = k.username AND u.username_key IS NULL
RETURNING u.user_id
"""

#: Every statement that writes ``users``. Each returns the ``user_id`` of the
#: rows it wrote and runs only through :class:`bugless_auth.user_writes.UserWrites`,
#: which logs them in the users' change feed (a test checks both).
USER_WRITES = frozenset(
    {
        INSERT_USER,
        REFRESH_USER,
        RELEASE_USERNAME,
        SET_DISABLED,
        INSERT_PLACEHOLDER,
        MERGE_PLACEHOLDER,
        DIRECTORY_DISABLE,
        DIRECTORY_ENABLE,
        SET_FOLDS,
        CLEAR_USERNAME_KEYS,
        SET_USERNAME_KEYS,
    }
)

# ---- the users' change feed (migration 0009) ----

#: Log users $1 (and the placeholders merged into them, which answer with
#: their data) as changed by this transaction, under the next version: the
#: last statement of every transaction writing ``users``. The UPDATE keeps
#: ``head`` locked until commit, so versions are in commit order.
LOG_USER_CHANGES = """
WITH head AS (
    UPDATE user_changes_state SET version = version + 1 WHERE name = 'head'
    RETURNING version
), changed AS (
    SELECT unnest($1::text[]) AS user_id
    UNION
    SELECT m.user_id FROM users m
     WHERE m.merged_into = ANY($1::text[]) AND m.merged_into <> ''  -- users_merged_into
), logged AS (
    INSERT INTO user_changes (version, user_id)
    SELECT head.version, changed.user_id FROM head, changed
    RETURNING version
)
SELECT version FROM head
"""

#: The feed after version $1, in one snapshot: ``head``, ``pruned``, and the
#: changes up to and including the version of the ($2 + 1)-th change after $1 (so
#: a page never ends inside a version), oldest first. Without changes, one
#: row with NULL ``version``.
READ_USER_CHANGES = """
WITH cut AS (
    SELECT version FROM user_changes WHERE version > $1 ORDER BY version OFFSET $2 LIMIT 1
), page AS (
    SELECT version, user_id FROM user_changes
     WHERE version > $1
       AND (NOT EXISTS (SELECT 1 FROM cut) OR version <= (SELECT version FROM cut))
)
SELECT h.version AS head, p.version AS pruned, page.version, page.user_id
FROM user_changes_state h
JOIN user_changes_state p ON h.name = 'head' AND p.name = 'pruned'
LEFT JOIN page ON true
ORDER BY page.version, page.user_id
"""

#: Remove the changes up to the newest one logged more than $1 seconds ago (a
#: prefix of the feed) and raise ``pruned`` to it.
PRUNE_USER_CHANGES = """
WITH cut AS (
    SELECT max(version) AS upto FROM user_changes
     WHERE changed_at < now() - $1::float8 * INTERVAL '1 second'
), gone AS (
    DELETE FROM user_changes WHERE version <= (SELECT upto FROM cut) RETURNING version
)
UPDATE user_changes_state SET version = (SELECT upto FROM cut)
 WHERE name = 'pruned' AND (SELECT upto FROM cut) > version
"""
