-- bugless schema 3: attachment content for the `database` blob store
-- (bugless_model_postgres.blobs): chunked rows, content-addressed by SHA-256.
-- Valid on PostgreSQL 14+ and CockroachDB 23.2+: plain tables and btree keys;
-- no large objects, no advisory locks, no deferred constraints.
--
-- A put writes its chunks under a fresh random blob_id as the content
-- streams in, and inserts the `blobs` row only at the end, when the hash is
-- known, all in one transaction: a failed upload leaves no row at all, and
-- content already stored costs a rolled-back transaction, not a second copy.
-- That ordering is why there is no foreign key from chunks to blobs.
CREATE TABLE blob_chunks (
    blob_id uuid NOT NULL,
    -- 0-based; every chunk but the last holds exactly blobs.chunk_size bytes,
    -- so a byte range maps to a range of seq without reading earlier chunks.
    seq     integer NOT NULL CHECK (seq >= 0),
    data    bytea NOT NULL,
    PRIMARY KEY (blob_id, seq)
);

CREATE TABLE blobs (
    sha256     bytea PRIMARY KEY CHECK (octet_length(sha256) = 32),
    blob_id    uuid NOT NULL UNIQUE,
    size       bigint NOT NULL CHECK (size >= 0),
    chunk_size integer NOT NULL CHECK (chunk_size > 0),
    created_at timestamptz NOT NULL DEFAULT now()
);
