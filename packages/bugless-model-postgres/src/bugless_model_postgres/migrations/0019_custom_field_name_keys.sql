-- bugless schema: custom fields are found by name through a key folded by the Model.
--
-- A search term names a custom field by name ignoring case ("found in"
-- finds "Found In"), and two fields that apply to the same issues may not
-- have names equal ignoring case. The Model folds the name the term gives
-- by Unicode case folding (Python's str.casefold) and SQL compared it with
-- lower(name): a second rule, the database's, which under the C locale
-- folds only ASCII and under none folds 'ß' to 'ss'. A field named
-- "Äpfel" could not be found by its own name on such a database (the term
-- folds to "äpfel", lower() leaves "Äpfel"), nor "Maße" as "MASSE".
--
-- `name_key` holds the name as the Model folds it, written with the name
-- by CreateCustomField and UpdateCustomField, and compared exactly. The
-- fields defined before this version are keyed by the Model right after
-- migrating (_custom_fields.fill_name_keys), as no SQL function folds by
-- that rule; a field a replica of the previous release defines meanwhile
-- is keyed by the next migrate. The index on lower(name) served only those
-- look-ups; the unique one (0004) stays as a backstop for ASCII names.
--
-- Valid on PostgreSQL 14+ and CockroachDB 23.2+.
ALTER TABLE custom_fields ADD COLUMN name_key text;
CREATE INDEX custom_fields_name_key ON custom_fields (name_key);
DROP INDEX IF EXISTS custom_fields_lower_name;
