-- bugless schema: an aggregate concatenating text vectors in the order given
-- (tsvector || as an aggregate: each vector's positions after the ones
-- before), with which an edit or a redaction makes an issue's comment vector
-- from its entries' stored vectors (0012), the same vector appending them
-- one by one builds.
--
-- CockroachDB has no CREATE AGGREGATE: bugless_model_cockroach ships this
-- version as a no-op, and its dialect rebuilds the vector from the texts.
CREATE AGGREGATE tsvector_concat_agg (tsvector) (
    SFUNC = tsvector_concat,
    STYPE = tsvector,
    INITCOND = ''
);
