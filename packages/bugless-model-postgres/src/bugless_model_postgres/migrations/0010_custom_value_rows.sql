-- bugless schema: custom field values as rows, for searches (issue 18).
--
-- `issues.custom_fields` (0004) stays what an issue reads; searches read
-- this table instead. A GIN index on the jsonb column (0004, 0008) can only
-- hand the planner a bitmap of every issue holding a value (~20k issues for
-- `"Found In":4.2` at 1M issues), which the open/component conditions then
-- cut down to a few hundred by visiting the heap. Here each value is a row
-- that also carries the issue's component and status, so the term, the
-- component subtree and `is:open` are bounds of ONE btree range: the search
-- compiler repeats the component and status conditions of the query inside
-- the custom-field subquery, and the index hands back exactly the matching
-- issue ids, index-only (bench/README.md, "One custom-field term").
--
-- One row per value: ENUM, TEXT, DATE ("2026-01-31", so text order is date
-- order), USER (the user id) and INTEGER (also in `number`) one each,
-- ENUM_MULTI one per option. Written in the same transaction as the issue
-- (bugless_model_postgres._custom_values.sync_rows) whenever the values, the
-- component or the status change. No foreign key: issues are never deleted
-- but by tests dropping whole schemas.
--
-- Valid on PostgreSQL 14+ and CockroachDB 23.2+: plain btree indexes,
-- jsonb_each / jsonb_array_elements_text / jsonb_typeof, no triggers.
CREATE TABLE issue_custom_values (
    issue_id     bigint NOT NULL,
    field_id     bigint NOT NULL,
    value        text NOT NULL,
    number       bigint,
    component_id bigint NOT NULL,
    status       smallint NOT NULL,
    PRIMARY KEY (issue_id, field_id, value)
);
-- Equality (`customfield12:4.2`, by name: several field ids), `has:`, date
-- ranges and text containment (a scan of one field's values), each narrowed
-- by the component subtree and status of the query.
CREATE INDEX issue_custom_values_value
    ON issue_custom_values (field_id, value, component_id, status, issue_id);
-- Integer comparisons (`customfield12>3`).
CREATE INDEX issue_custom_values_number
    ON issue_custom_values (field_id, number, component_id, status, issue_id)
    WHERE number IS NOT NULL;

INSERT INTO issue_custom_values (issue_id, field_id, value, number, component_id, status)
SELECT i.id, e.key::bigint, x.value,
       CASE WHEN jsonb_typeof(e.value) = 'number' THEN x.value::bigint END,
       i.component_id, i.status
  FROM issues i
       CROSS JOIN LATERAL jsonb_each(i.custom_fields) AS e
       CROSS JOIN LATERAL jsonb_array_elements_text(
           CASE WHEN jsonb_typeof(e.value) = 'array' THEN e.value
                ELSE jsonb_build_array(e.value) END) AS x(value)
 WHERE i.custom_fields <> '{}'::jsonb
ON CONFLICT DO NOTHING;

-- The jsonb GIN indexes served only custom-field searches, now answered
-- above; dropping them saves their upkeep on every issue write.
DROP INDEX IF EXISTS issues_custom_fields_values;
DROP INDEX IF EXISTS issues_custom_fields;
