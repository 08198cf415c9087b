-- Directory re-sync (issue 20; number 0005 in the plan, as here).
--
-- directory_disabled: the user was disabled by the re-sync because their
-- directory no longer lists them (entry deleted, or no longer matching the
-- user filter, e.g. an account lock). The re-sync re-enables such a user when
-- the directory lists them again; a user an administrator disabled
-- (disabled without directory_disabled) stays disabled whatever the directory
-- says.
ALTER TABLE users ADD COLUMN directory_disabled boolean NOT NULL DEFAULT false;
