"""The statements of the ``database`` blob store (:mod:`bugless_model_postgres.blobs`).

Unqualified names, like every statement of this package: connections run
with ``search_path`` set to the Model's schema. Hashes are 32-byte ``bytea``.
"""

from __future__ import annotations

#: One chunk of an upload in progress: $1 blob_id, $2 seq, $3 data.
INSERT_CHUNK = "INSERT INTO blob_chunks (blob_id, seq, data) VALUES ($1, $2, $3)"

#: Publish an upload under its hash ($1 sha256, $2 blob_id, $3 size,
#: $4 chunk_size); no row comes back when the content is already stored.
INSERT_BLOB_IF_NEW = """
INSERT INTO blobs (sha256, blob_id, size, chunk_size) VALUES ($1, $2, $3, $4)
ON CONFLICT (sha256) DO NOTHING
RETURNING blob_id
"""

#: Size of the content stored under $1.
BLOB_SIZE = "SELECT size FROM blobs WHERE sha256 = $1"

#: Where the chunks of $1 are, and how they are cut.
BLOB_LAYOUT = "SELECT blob_id, chunk_size FROM blobs WHERE sha256 = $1"

#: Chunks $2 <= seq < $3 of blob $1, in order.
CHUNKS = """
SELECT seq, data FROM blob_chunks
 WHERE blob_id = $1 AND seq >= $2 AND seq < $3
 ORDER BY seq
"""

#: Unpublish $1; returns the blob_id whose chunks are to go.
DELETE_BLOB = "DELETE FROM blobs WHERE sha256 = $1 RETURNING blob_id"

#: Every chunk of blob $1.
DELETE_CHUNKS = "DELETE FROM blob_chunks WHERE blob_id = $1"

#: A page of content stored before $1, after hash $2, in hash order ($3 rows).
STORED_BEFORE = """
SELECT sha256 FROM blobs
 WHERE created_at < $1 AND sha256 > $2
 ORDER BY sha256
 LIMIT $3
"""

#: Liveness: the table is there and the database answers.
READY = "SELECT count(*) FROM (SELECT 1 FROM blobs LIMIT 1) AS one"
