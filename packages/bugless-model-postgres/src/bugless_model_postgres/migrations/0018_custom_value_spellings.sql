-- bugless schema: values stored in an option's former spelling are queued to be respelled.
--
-- An UpdateCustomField renaming an option's case only ("Bug" to "bug")
-- left the values holding it as they were stored ("Bug"); searches compare
-- a term, matched to the option as spelled now, with the stored values
-- exactly, so `"Kind":bug` missed them. From this version on a rename
-- carries the values to the new spelling (bugless_model_postgres.
-- _field_holders), and every stored value spells an option of its field as
-- the field spells it now. Values renamed before are respelled by the
-- Model right after migrating (_field_holders.respell_backfill): which
-- option a spelling names is decided by Unicode case folding, Python's
-- str.casefold, the one rule options compare by; SQL's lower() folds
-- otherwise (by collation: only ASCII under the C locale), so this file
-- only queues the fields holding a value that is no option exactly, as
-- 0011 queued issues for their mentions. A value naming no option in any
-- spelling (stranded by the removal of an option still held, which
-- UpdateCustomField let through before it compared by case folding) is
-- left as it is.
--
-- Valid on PostgreSQL 14+ and CockroachDB 23.2+.
CREATE TABLE custom_value_spellings_pending (
    field_id bigint PRIMARY KEY
);
INSERT INTO custom_value_spellings_pending (field_id)
SELECT f.id
  FROM custom_fields f
 WHERE f.type IN (1, 2)
   AND EXISTS (SELECT 1 FROM issue_custom_values v
                WHERE v.field_id = f.id AND NOT (v.value = ANY (f.options)));
