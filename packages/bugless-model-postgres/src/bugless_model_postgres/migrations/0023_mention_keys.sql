-- bugless schema: mentions are kept by username key, for every username.
--
-- `issue_mentions.username` held the lower-case names an ASCII grammar found
-- (@ then [A-Za-z0-9._-], at most 64 characters). The grammar is now the
-- usernames' own (bugless_core.usernames: letters and digits of any script,
-- combining marks, and . _ @ + -), and names are kept by username_key
-- (lower-case, then NFC) rather than str.lower(): "@Ölaf" mentions "ölaf"
-- (the old grammar found nobody), "@josé" mentions "josé" (not "jos"),
-- "@ann@corp.example" mentions that name (not "ann"). For ASCII names the
-- key is the lower-case name, so the rows of ASCII mentions stay valid.
--
-- The texts where the two grammars can find different names are queued in
-- `issue_mentions_pending` (0011), and `PostgresBackend.migrate` recomputes
-- their issues with the Python rule right after migrating
-- (_mentions.backfill): texts with "@" and any non-ASCII character, with a
-- name run followed by "+" or "@", or with a run of 64 name characters
-- (the old grammar's limit). A plain "@ann" queues nothing.
--
-- Valid on PostgreSQL 14+ and CockroachDB 23.2+ (`~` is POSIX there, RE2
-- here; both read these bracket expressions alike).
INSERT INTO issue_mentions_pending (issue_id)
SELECT i.id
  FROM issues i
 WHERE (strpos(i.title, '@') > 0
        AND (octet_length(i.title) <> char_length(i.title)
             OR i.title ~ '@[A-Za-z0-9._-]*[+@]'
             OR i.title ~ '@[A-Za-z0-9._-]{64}'))
    OR EXISTS (SELECT 1 FROM issue_history h
                WHERE h.issue_id = i.id
                  AND strpos(h.comment, '@') > 0
                  AND (octet_length(h.comment) <> char_length(h.comment)
                       OR h.comment ~ '@[A-Za-z0-9._-]*[+@]'
                       OR h.comment ~ '@[A-Za-z0-9._-]{64}'))
ON CONFLICT (issue_id) DO NOTHING;
