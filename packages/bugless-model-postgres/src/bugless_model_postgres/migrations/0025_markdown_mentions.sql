-- bugless schema: mentions are read from the texts' Markdown, as the web renders them.
--
-- The Model found `@name` in the raw text of titles, descriptions and
-- comments, while the web linked the mentions of the rendered Markdown's
-- prose: "_@ann_" (emphasis) was linked but not kept (nor notified), while
-- "`@ann`" (code), a fenced block's "@decorator" and the "@ann" of a link's
-- URL were kept (and notified) but not linked. One rule decides now, the
-- web's (bugless_core.markdown, bugless_core.mentions): the `@name`s of the
-- parse's prose, outside code and links.
--
-- Any text with an "@" (or an "&", since "&#64;" is one) may read
-- differently, so its issue is queued in `issue_mentions_pending` (0011) and
-- `PostgresBackend.migrate` recomputes it with the Python rule right after
-- migrating (_mentions.backfill). An issue with neither keeps its rows
-- (none).
--
-- Valid on PostgreSQL 14+ and CockroachDB 23.2+.
INSERT INTO issue_mentions_pending (issue_id)
SELECT i.id
  FROM issues i
 WHERE strpos(i.title, '@') > 0
    OR strpos(i.title, '&') > 0
    OR EXISTS (SELECT 1 FROM issue_history h
                WHERE h.issue_id = i.id
                  AND (strpos(h.comment, '@') > 0 OR strpos(h.comment, '&') > 0))
ON CONFLICT (issue_id) DO NOTHING;
