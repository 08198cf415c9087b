-- bugless schema: a file's description is searched and read for mentions.
--
-- 0031 gave an imported file the description its source tracker showed
-- beside it (Trac's, Redmine's): text a person wrote, which before 0031
-- was the comment of the entry attaching the file, found by full-text
-- search, `comment:` and `mention:`. Since then the Model builds the
-- comment vectors (issues.comments_tsv, text_tsv) with each entry's comment
-- followed by the descriptions of the files it attached, and reads the
-- descriptions for the issue's mentions (_imports._all_text, _edits,
-- _mentions); a redaction of the file takes its description out of both.
--
-- Issues imported by the release of 0031 before this one lack them. Their
-- vectors are made again here from the current texts in that order (the
-- latest edit of each entry, redacted ones blank, then its files'
-- descriptions), as an edit on CockroachDB makes them; their stored
-- entry vectors (0012) hold comments only and stay. The issues whose
-- descriptions hold an "@" are queued for their mentions, which
-- `PostgresBackend.migrate` recomputes right after migrating
-- (_mentions.backfill). Neither changes an issue's version or its feed: the
-- vectors and mentions are what the stored texts say.
--
-- Issues with a redacted file are remade and queued too: a replica of
-- 0031's release redacting a file during the rollout blanks its
-- description but leaves it in the vectors and mentions this file made, and
-- running this file's statements again after the rollout removes it
-- (docs/upgrades.md). Only those issues are read: a scan of `attachments`
-- (no index on description), then the history of those issues.
--
-- Valid on PostgreSQL 14+ and CockroachDB 23.2+.
UPDATE issues AS i
   SET comments_tsv = t.tsv, text_tsv = to_tsvector('english', i.title) || t.tsv
  FROM (SELECT cur.issue_id,
               to_tsvector('english',
                           coalesce(string_agg(concat_ws(' ', cur.body, d.described),
                                               ' ' ORDER BY cur.original), '')) AS tsv
          FROM (SELECT DISTINCT ON (h.issue_id, coalesce(nullif(h.edits_version, 0), h.version))
                       h.issue_id, coalesce(nullif(h.edits_version, 0), h.version) AS original,
                       h.comment AS body
                  FROM issue_history h
                 WHERE h.issue_id IN (SELECT issue_id FROM attachments
                                       WHERE description <> '' OR redacted)
                 ORDER BY h.issue_id, coalesce(nullif(h.edits_version, 0), h.version),
                          h.version DESC) cur
               LEFT JOIN (SELECT issue_id, entry_version,
                                 string_agg(description, ' ' ORDER BY id) AS described
                            FROM attachments
                           WHERE description <> ''
                           GROUP BY issue_id, entry_version) d
                      ON d.issue_id = cur.issue_id AND d.entry_version = cur.original
         GROUP BY cur.issue_id) t
 WHERE i.id = t.issue_id;
INSERT INTO issue_mentions_pending (issue_id)
SELECT DISTINCT issue_id FROM attachments WHERE strpos(description, '@') > 0 OR redacted
ON CONFLICT DO NOTHING;
