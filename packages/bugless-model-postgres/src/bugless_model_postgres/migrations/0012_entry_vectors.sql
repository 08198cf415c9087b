-- bugless schema: the text vector of each history entry's comment, kept so an
-- edit or a redaction rebuilds its issue's comment vector without parsing
-- every comment again.
--
-- issues.comments_tsv is the vectors of the current text of every entry (the
-- latest edit of each, redacted ones empty) concatenated in entry order
-- (tsvector ||): what the writers build by appending each new comment's
-- vector. An edit or a redaction changes one entry's text in the middle, so
-- the issue's vector is made again from all of them; parsing every text
-- (to_tsvector) was most of its cost, ~13 ms for an issue of 200 comments.
--
-- A row here is to_tsvector('english', comment) of history entry
-- (issue_id, version), or absent (not computed yet). Nothing is written when
-- an entry is: no write pays for it and nothing is backfilled (entries
-- written before this version are absent like new ones). On PostgreSQL an
-- edit or a redaction computes the missing vectors of its issue's current
-- entries, stores them and concatenates the stored ones (0013's aggregate),
-- so later ones parse only the entries written since
-- (bugless_model_postgres._edits). A redaction deletes the vectors of every
-- version it blanks: a redacted text leaves no vector behind.
--
-- CockroachDB has no user-defined aggregates (0013): its edits parse the
-- texts as before and never fill this table; its redactions delete here
-- all the same. No foreign key: issues are never deleted but by tests
-- dropping whole schemas (as issue_mentions).
CREATE TABLE issue_entry_vectors (
    issue_id bigint NOT NULL,
    version  bigint NOT NULL,
    tsv      tsvector NOT NULL,
    PRIMARY KEY (issue_id, version)
);
