-- bugless schema: a mentioned name is one unit of the Markdown reading.
--
-- CommonMark reads an "_" run beside punctuation as emphasis, and the
-- Markdown reading of 0025 let it cut a name: "for @0._0_.0." mentioned
-- "0" (its "_0_" was emphasis), "_@a_b_.c_" mentioned "a_b" (emphasis
-- closing at the name's second "_"). The one parser
-- (bugless_core.markdown.mention_units) now reads "@" and the name as text
-- before emphasis can see its "_": such texts mention the whole name.
--
-- Only a text with an "@" and an "_" beside ".", "+", "@" or "-" can read
-- differently (an "_" between letters, digits or marks is never a delimiter,
-- and no other username character starts a Markdown construct), so its issue
-- is queued in `issue_mentions_pending` (0011) and `PostgresBackend.migrate`
-- recomputes it with the Python rule right after migrating
-- (_mentions.backfill). Other issues keep their rows.
--
-- Valid on PostgreSQL 14+ and CockroachDB 23.2+ (`~` is POSIX there, RE2
-- here; both read these bracket expressions alike).
INSERT INTO issue_mentions_pending (issue_id)
SELECT i.id
  FROM issues i
 WHERE (strpos(i.title, '@') > 0 AND i.title ~ '[.+@-]_|_[.+@-]')
    OR EXISTS (SELECT 1 FROM issue_history h
                WHERE h.issue_id = i.id
                  AND strpos(h.comment, '@') > 0
                  AND h.comment ~ '[.+@-]_|_[.+@-]')
ON CONFLICT (issue_id) DO NOTHING;
