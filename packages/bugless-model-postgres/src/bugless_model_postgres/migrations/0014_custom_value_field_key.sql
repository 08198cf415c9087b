-- bugless schema: a custom value's search row names a field that exists.
--
-- A write setting a field on an issue reads the field's definition, then
-- writes the value (issues.custom_fields) and its search rows (0010) in
-- the same transaction. DeleteCustomField locks the definition, removes its
-- values from the issues its rows name, then the definition. Nothing made
-- the two wait for each other: a write that read the field before the
-- deletion committed, on an issue that did not hold it yet, wrote a value
-- and a row the deletion never saw, for a field that no longer existed.
--
-- With this key, inserting a row takes FOR KEY SHARE on its field's row: a
-- write queues behind a deletion that locked the field (and then fails with
-- 23503, which the Model retries: the retry reads the definitions again, as
-- a write coming after the deletion), and a deletion queues behind a write
-- that inserted first (its statements then see the value and remove it).
-- Only inserted rows are checked: a status or component change updating
-- kept rows takes no lock. The leading column of issue_custom_values_value
-- serves the deletion's check for referencing rows.
--
-- Values left by that race before this version are removed first (their
-- fields are gone; nothing can read them), so the key validates.
--
-- Valid on PostgreSQL 14+ and CockroachDB 23.2+.
UPDATE issues i
   SET custom_fields = (SELECT coalesce(jsonb_object_agg(e.key, e.value), '{}'::jsonb)
                          FROM jsonb_each(i.custom_fields) AS e
                         WHERE EXISTS (SELECT 1 FROM custom_fields f WHERE f.id = e.key::bigint))
 WHERE i.id IN (SELECT v.issue_id FROM issue_custom_values v
                 WHERE NOT EXISTS (SELECT 1 FROM custom_fields f WHERE f.id = v.field_id));

DELETE FROM issue_custom_values v
 WHERE NOT EXISTS (SELECT 1 FROM custom_fields f WHERE f.id = v.field_id);

ALTER TABLE issue_custom_values
    ADD CONSTRAINT issue_custom_values_field_id_fkey
    FOREIGN KEY (field_id) REFERENCES custom_fields (id);
