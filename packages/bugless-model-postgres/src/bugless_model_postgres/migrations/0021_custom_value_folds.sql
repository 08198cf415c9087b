-- bugless schema: text custom values are searched by the Model's case folding.
--
-- A term on a TEXT field finds the issues whose value contains the text in
-- any case ("Found In":crash finds "Crash in parser"). SQL compared
-- strpos(lower(value), lower(text)): the database's rule, which under the C
-- locale (the tests' and `bugless dev`'s clusters, a CloudNativePG default)
-- folds ASCII only, so "ÄPFEL" did not find "äpfel", and which under no
-- collation folds "ß" to "ss" ("STRASSE" never found "Straße"). ILIKE folds
-- by the same lower(). PostgreSQL 18's casefold() does fold by Unicode, but
-- only under a builtin or ICU collation that the database need not have,
-- not on PostgreSQL 14-17, and CockroachDB has no such function.
--
-- `folded` holds each search row's value as the Model folds it (Python's
-- str.casefold, the rule custom field names and options compare by),
-- written with the row by every write of 0010's rows; a term's text is
-- folded the same way and found in it with strpos(). The rows written
-- before are folded by the Model right after migrating
-- (_custom_values.fold_rows), found through the partial index below, which
-- is empty once they are; rows a replica of the previous release writes
-- meanwhile are folded by the next migrate.
--
-- Valid on PostgreSQL 14+ and CockroachDB 23.2+ (partial indexes, strpos).
ALTER TABLE issue_custom_values ADD COLUMN folded text;
CREATE INDEX issue_custom_values_unfolded ON issue_custom_values (issue_id)
    WHERE folded IS NULL;
