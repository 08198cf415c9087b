-- One live session per client certificate, kept by the database (not by a read before the write).
--
-- AuthService reuses a certificate's live session (0013 `certificate`) and
-- records a new one only when it found none usable. Two first connections at
-- once both found none, and both recorded one: a read-then-write. Each session
-- of a certificate now has a generation, one more than the highest its user and
-- certificate had when it was recorded, and the generation is unique per user
-- and certificate: of two inserts that saw the same sessions, one wins and the
-- other inserts nothing (`ON CONFLICT DO NOTHING`, after waiting for the
-- winner's commit on PostgreSQL at READ COMMITTED; a 40001 and a re-run at
-- SERIALIZABLE and on CockroachDB) and reuses the winner's session. A unique
-- index, not a lock, so CockroachDB keeps the rule as PostgreSQL does.
--
-- Sessions of no certificate have no generation (NULL: never equal, so never in
-- conflict), nor do certificate sessions recorded before this migration, or by
-- a replica of the previous release during the rollout (it does not insert the
-- column: its race stays as it was until it is replaced).
ALTER TABLE sessions ADD COLUMN certificate_generation integer;
CREATE UNIQUE INDEX sessions_certificate_generation
    ON sessions (user_id, certificate, certificate_generation);
