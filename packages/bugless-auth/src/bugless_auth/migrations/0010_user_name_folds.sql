-- The Authenticator's schema: people are suggested by names folded by Python's str.casefold.
--
-- SuggestUsers finds enabled users whose username, display name or email
-- begins with a prefix, in any case. The store lower-cased the prefix with
-- Python's str.lower() and compared it with SQL's lower() of each column:
-- two rules, the second the database's, which under the C locale (the
-- tests' and `bugless dev`'s clusters, a CloudNativePG default) folds ASCII
-- only. "Émile Zola" was suggested neither for "émi" nor for "Émi" (the
-- prefix became "émi", lower() left "Émile"), and "ß" never matched "SS".
--
-- Each user row now holds its username, display name and email folded by
-- str.casefold (the rule the Model compares names by), written with them by
-- every write of those columns; the prefix is folded the same way. The
-- users made before are folded right after migrating
-- (bugless_auth.store.fold_users, logged in the users' change feed as every
-- write of users is); those a replica of the previous release writes
-- meanwhile are folded by the next migrate (every replica that starts with
-- --migrate runs it). The three prefix indexes on lower() served only the
-- suggestion and are replaced by the same on the folds. Username equality
-- (sign-in, look-ups, the unique index on lower(username)) is unchanged.
ALTER TABLE users ADD COLUMN username_fold text;
ALTER TABLE users ADD COLUMN display_name_fold text;
ALTER TABLE users ADD COLUMN email_fold text;
CREATE INDEX users_username_fold_prefix ON users (username_fold text_pattern_ops);
CREATE INDEX users_display_name_fold_prefix ON users (display_name_fold text_pattern_ops);
CREATE INDEX users_email_fold_prefix ON users (email_fold text_pattern_ops);
CREATE INDEX users_unfolded ON users (user_id) WHERE username_fold IS NULL;
DROP INDEX IF EXISTS users_username_prefix;
DROP INDEX IF EXISTS users_display_name_prefix;
DROP INDEX IF EXISTS users_email_prefix;
