-- bugless schema: 0015's option check compares a new value with the options exactly.
--
-- The Model matches what a client sends to an option by Unicode case
-- folding (Python's str.casefold, bugless_core.custom_fields) and stores the
-- option's spelling, so a search row a write inserts names an option exactly
-- as the write read it. The check compared lower(option) = lower(value)
-- instead: a second case rule, the database's, which under the C locale
-- folds ASCII only and under none folds 'ß' to 'ss'. It also let a stale
-- spelling in: a write that matched "Bug" before an UpdateCustomField
-- renamed the option to "bug" inserted "Bug" after it, and lower() found it
-- an option, leaving a value in a spelling the field no longer has.
--
-- Now the row must name an option as spelled when its statement runs. A
-- row refused here was matched against options that changed meanwhile (an
-- option removed, or renamed, only its case changed); the Model retries the
-- write (OptionRemovedMeanwhile), whose new attempt matches the options as
-- they are now: InvalidArgument for a removed option, the new spelling for
-- a renamed one. No rule about letter case is left in SQL. Only inserted
-- rows are checked, never rows a rename of an option rewrites in place.
--
-- PostgreSQL only, as 0015 (bugless_model_cockroach makes it a no-op).
CREATE OR REPLACE FUNCTION issue_custom_values_option_check() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    stale record;
BEGIN
    PERFORM 1 FROM custom_fields f
     WHERE f.id IN (SELECT n.field_id FROM inserted n) AND f.type IN (1, 2)
     ORDER BY f.id
       FOR KEY SHARE;
    SELECT n.field_id, n.value, f.name INTO stale
      FROM inserted n JOIN custom_fields f ON f.id = n.field_id
     WHERE f.type IN (1, 2) AND NOT (n.value = ANY (f.options))
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            CONSTRAINT = 'issue_custom_values_option',
            MESSAGE = format('custom field %L (id %s) has no option spelled %L (removed or '
                             'renamed meanwhile)', stale.name, stale.field_id, stale.value);
    END IF;
    RETURN NULL;
END $$;
