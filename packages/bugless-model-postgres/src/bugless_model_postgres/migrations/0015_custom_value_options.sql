-- bugless schema: a new custom value's search row names an option its field still has.
--
-- A write setting an ENUM or ENUM_MULTI value reads the field's options
-- without a lock, checks the value against them, then writes the value
-- (issues.custom_fields) and its search rows (0010). UpdateCustomField
-- locks the definition (FOR UPDATE), refuses to remove an option some
-- search row still names, then writes the new options. A write that read
-- the options before such an update committed and inserted its rows after
-- stored a value naming an option the field no longer had: 0014's key
-- makes the insert wait for the update's lock, but then finds the field
-- there and lets the row in.
--
-- This trigger checks the rows each statement inserts, once per statement
-- (its transition table), against the options as committed: it first locks
-- their fields FOR KEY SHARE (the key's lock: it waits for an update that
-- holds the definition, and an update arriving later waits for this
-- write's commit, then finds its rows and refuses), then reads the options
-- in a statement of its own, which on READ COMMITTED sees the update that
-- lock waited for. A row naming a removed option fails the statement with
-- check_violation on constraint issue_custom_values_option; the Model
-- retries the write (OptionRemovedMeanwhile), whose new attempt validates
-- against the options as they are now and answers InvalidArgument. Options
-- compare ignoring case, as UpdateCustomField's check does (renaming "Foo"
-- to "foo" removes nothing, so values stored as "Foo" stay valid). Rows
-- updated in place (a status or component change) are not checked: they
-- name the value the issue already held.
--
-- PostgreSQL only: CockroachDB 23.2 has no triggers, and on SERIALIZABLE
-- (CockroachDB, the cockroach backend's compatibility mode) the two
-- transactions are a write skew the database refuses by itself.
CREATE FUNCTION issue_custom_values_option_check() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    stale record;
BEGIN
    PERFORM 1 FROM custom_fields f
     WHERE f.id IN (SELECT n.field_id FROM inserted n) AND f.type IN (1, 2)
     ORDER BY f.id
       FOR KEY SHARE;
    SELECT n.field_id, n.value, f.name INTO stale
      FROM inserted n JOIN custom_fields f ON f.id = n.field_id
     WHERE f.type IN (1, 2)
       AND NOT EXISTS (SELECT 1 FROM unnest(f.options) AS o WHERE lower(o) = lower(n.value))
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            CONSTRAINT = 'issue_custom_values_option',
            MESSAGE = format('option %L of custom field %L (id %s) no longer exists',
                             stale.value, stale.name, stale.field_id);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER issue_custom_values_option
    AFTER INSERT ON issue_custom_values
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION issue_custom_values_option_check();
