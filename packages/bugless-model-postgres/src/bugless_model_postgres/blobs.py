"""The ``database`` blob store: attachment content as chunk rows in the Model's database.

The default store: nothing to run beside the database the Model already has,
and the content is in the same backups as the metadata referencing it.
Tables are created by the Model's migrations (``0003_blobs.sql``), so
``bugless model migrate`` sets it up.

* **put** streams the content into ``blob_chunks`` rows of ``chunk_bytes``
  under a fresh random ``blob_id``, in one transaction, and at the end
  inserts the ``blobs`` row keyed by the SHA-256 (``ON CONFLICT DO
  NOTHING``). If the content was already there, the transaction is rolled
  back: the second copy never becomes visible and costs no space once vacuumed.
  Any failure (size limit, broken stream, lost connection) rolls back too, so
  nothing is ever left behind, even when the process dies mid-upload.
* **listing** (for the Model's sweep of orphaned content) pages through
  ``blobs`` by hash; ``created_at`` says when content was stored. Nothing
  else is ever left behind: an upload never published is rolled back.
* **reads** fetch a few chunks per query by chunk number (no cursor, no
  transaction held between queries), prefetching the next batch while the
  current one is consumed; a range starts at the chunk holding its first byte.

Works on PostgreSQL and on CockroachDB: only plain tables, ``bytea`` and
``ON CONFLICT``; no large objects, no advisory locks. An upload holds one
pooled connection and one open transaction for as long as the client takes
to send it: size ``BUGLESS_BLOB_POOL_MAX_SIZE`` for the concurrent uploads
expected, and keep the server's ``idle_in_transaction_session_timeout`` (if
set) above the longest pause a slow client may make.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Self

import asyncpg

from bugless_core.blobs import BlobRef, BlobStore, BlobUpload
from bugless_core.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from bugless_core.migrations import applied_version, quote_schema
from bugless_core.settings import setting
from bugless_core.transactions import POSTGRES_RETRIES, retrying
from bugless_model_postgres import _blob_queries as sql
from bugless_model_postgres._convert import Conn
from bugless_model_postgres._database import release_as_is, translated_errors

#: The migration that creates the store's tables.
BLOB_SCHEMA_VERSION = 3
#: Smallest and largest chunk row allowed. CockroachDB advises rows well under
#: a few MiB; below 4 KiB the per-row overhead dominates.
MIN_CHUNK_BYTES = 4 * 1024
MAX_CHUNK_BYTES = 4 * 1024 * 1024
#: Default bytes per chunk row: under CockroachDB's advice to keep values below
#: 1 MiB; against 256 KiB it measured ~40 % faster both ways (bench/blobs.py).
DEFAULT_CHUNK_BYTES = 512 * 1024
#: Hashes listed per query by :meth:`DatabaseBlobStore.stored_before`.
LIST_PAGE = 500
#: Bytes fetched per read query (whole chunks, at least one).
READ_BATCH_BYTES = 1024 * 1024
_CONFLICTS = (
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    asyncpg.UniqueViolationError,
)


@dataclass(frozen=True)
class DatabaseBlobSettings:
    """Settings of the ``database`` store (``BUGLESS_BLOB_STORE=database``).

    Attributes:
        database_url: The Model's database.
        schema: The Model's schema, where migration 3 created the tables.
        chunk_bytes: Bytes per chunk row.
        pool_max_size: Connections of the store's own pool; each upload in
            progress holds one.
    """

    database_url: str = setting(
        env="BUGLESS_DATABASE_URL", help="the Model's database, postgresql://user:pass@host/db"
    )
    schema: str = setting(
        env="BUGLESS_DATABASE_SCHEMA", default="bugless", help="the Model's schema"
    )
    chunk_bytes: int = setting(
        env="BUGLESS_BLOB_CHUNK_BYTES",
        default=DEFAULT_CHUNK_BYTES,
        help=f"bytes per chunk row, {MIN_CHUNK_BYTES} to {MAX_CHUNK_BYTES}",
    )
    pool_max_size: int = setting(
        env="BUGLESS_BLOB_POOL_MAX_SIZE",
        default=10,
        help="connections for blobs; each upload in progress holds one",
    )

    def __post_init__(self) -> None:
        if not MIN_CHUNK_BYTES <= self.chunk_bytes <= MAX_CHUNK_BYTES:
            msg = (
                f"BUGLESS_BLOB_CHUNK_BYTES: {self.chunk_bytes} is outside "
                f"{MIN_CHUNK_BYTES}..{MAX_CHUNK_BYTES}"
            )
            raise InvalidArgument(msg)
        if self.pool_max_size < 1:
            raise InvalidArgument(f"BUGLESS_BLOB_POOL_MAX_SIZE: {self.pool_max_size} is below 1")
        quote_schema(self.schema)


class DatabaseBlobStore(BlobStore):
    """Blob content in ``blobs``/``blob_chunks`` rows of the Model's database.

    Build it with :meth:`connect` (its own pool), or directly on a pool whose
    connections have ``search_path`` set to the Model's schema (the Model's
    own pool, to share its connections).
    """

    name = "database"
    settings_type = DatabaseBlobSettings

    def __init__(
        self, pool: asyncpg.Pool, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES, owns_pool: bool = False
    ) -> None:
        """Use ``pool``; close it in :meth:`close` only if ``owns_pool``."""
        self._pool = pool
        self._chunk_bytes = chunk_bytes
        self._owns_pool = owns_pool

    @classmethod
    async def connect(cls, settings: DatabaseBlobSettings) -> Self:
        """Open a pool on the Model's schema; refuse a schema without the blob tables.

        The pool sets no ``statement_timeout``, unlike the Model's: each of its
        statements moves one chunk, one read batch or one page of hashes by
        key, so none grows with a query, and an upload's length (its pauses,
        between statements) is not a statement's. A role's or database's
        default still applies (README, "The `database` blob store").
        """
        schema_sql = quote_schema(settings.schema)
        server_settings = {
            "search_path": f"{schema_sql}, public",
            "application_name": "bugless-blobs",
        }
        async with translated_errors():
            conn = await asyncpg.connect(settings.database_url, server_settings=server_settings)
            try:
                found = await applied_version(conn, settings.schema)
            finally:
                await conn.close()
        if found < BLOB_SCHEMA_VERSION:
            msg = (
                f"the database schema {settings.schema!r} is at version {found}; the database "
                f"blob store needs version {BLOB_SCHEMA_VERSION}: run `bugless model migrate`"
            )
            raise FailedPrecondition(msg)
        async with translated_errors():
            pool = await asyncpg.create_pool(
                settings.database_url,
                min_size=1,
                max_size=settings.pool_max_size,
                server_settings=server_settings,
                # Nothing here leaves session state; asyncpg's reset would call
                # pg_advisory_unlock_all(), which CockroachDB lacks.
                reset=release_as_is,
            )
        return cls(pool, chunk_bytes=settings.chunk_bytes, owns_pool=True)

    async def close(self) -> None:
        """Close the pool if this store opened it."""
        if self._owns_pool:
            await self._pool.close()

    async def check_ready(self) -> bool:
        """Whether the blob tables answer."""
        try:
            async with translated_errors():
                await self._pool.fetchval(sql.READY)
        except Unavailable:
            return False
        return True

    # ---- writing ----

    async def _put(self, upload: BlobUpload) -> None:
        try:
            async with translated_errors(), self._pool.acquire() as conn:
                await self._write(conn, upload)
        except _CONFLICTS as exc:
            # Only the final `blobs` insert touches rows other uploads touch:
            # losing that race means a concurrent put stored the same content.
            if upload.done and await self._size(upload.ref().sha256) is not None:
                return
            msg = (
                "the upload conflicted with a concurrent write and nothing was stored; "
                "send it again"
            )
            raise Unavailable(msg) from exc

    async def _write(self, conn: Conn, upload: BlobUpload) -> None:
        """Write the chunks and publish them, or roll everything back."""
        blob_id = uuid.uuid4()
        transaction = conn.transaction()
        await transaction.start()
        try:
            await self._write_chunks(conn, blob_id, upload)
            ref = upload.ref()
            stored = await conn.fetchval(
                sql.INSERT_BLOB_IF_NEW,
                bytes.fromhex(ref.sha256),
                blob_id,
                ref.size,
                self._chunk_bytes,
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await transaction.rollback()
            raise
        if stored is None:
            await transaction.rollback()  # the content is stored already
        else:
            await transaction.commit()

    async def _write_chunks(self, conn: Conn, blob_id: uuid.UUID, upload: BlobUpload) -> None:
        """Insert each chunk while the next one arrives (one insert in flight at a time)."""
        in_flight: asyncio.Task[str] | None = None
        seq = 0
        try:
            async for piece in upload.pieces(self._chunk_bytes):
                if in_flight is not None:
                    await in_flight
                in_flight = asyncio.create_task(conn.execute(sql.INSERT_CHUNK, blob_id, seq, piece))
                seq += 1
            if in_flight is not None:
                await in_flight
        except BaseException:
            if in_flight is not None and not in_flight.done():
                # Let the statement finish: cancelling it mid-protocol would
                # leave the connection unusable for the rollback.
                with contextlib.suppress(Exception):
                    await asyncio.shield(in_flight)
            raise

    # ---- reading ----

    async def _size(self, sha256: str) -> int | None:
        async with translated_errors():
            size: int | None = await self._pool.fetchval(sql.BLOB_SIZE, bytes.fromhex(sha256))
        return size

    async def _read(self, ref: BlobRef, offset: int, length: int) -> AsyncGenerator[bytes, None]:
        async with translated_errors():
            layout = await self._pool.fetchrow(sql.BLOB_LAYOUT, bytes.fromhex(ref.sha256))
        if layout is None:
            raise self._deleted_while_read(ref)
        blob_id: uuid.UUID = layout["blob_id"]
        chunk_size: int = layout["chunk_size"]
        end = offset + length
        first, last = offset // chunk_size, (end - 1) // chunk_size
        batch = max(1, READ_BATCH_BYTES // chunk_size)

        async def fetch(start: int) -> list[asyncpg.Record]:
            stop = min(start + batch, last + 1)
            async with translated_errors():
                rows: list[asyncpg.Record] = await self._pool.fetch(
                    sql.CHUNKS, blob_id, start, stop
                )
            if [r["seq"] for r in rows] != list(range(start, stop)):
                raise self._deleted_while_read(ref)
            return rows

        next_rows: asyncio.Task[list[asyncpg.Record]] | None = asyncio.create_task(fetch(first))
        try:
            start = first
            while next_rows is not None:
                rows = await next_rows
                start += batch
                next_rows = asyncio.create_task(fetch(start)) if start <= last else None
                for row in rows:
                    data: bytes = row["data"]
                    chunk_start = row["seq"] * chunk_size
                    lo = max(offset - chunk_start, 0)
                    hi = min(end - chunk_start, len(data))
                    yield data if (lo, hi) == (0, len(data)) else data[lo:hi]
        finally:
            if next_rows is not None:
                # A reader closed early: let the prefetch (one batch) finish
                # rather than cancel a query mid-protocol on a pooled connection.
                with contextlib.suppress(Exception):
                    await next_rows

    def _deleted_while_read(self, ref: BlobRef) -> NotFound:
        return NotFound(f"blob {ref.sha256}: it was deleted while being read")

    # ---- listing ----

    async def _stored_before(self, cutoff: datetime) -> AsyncIterator[str]:
        """Pages of ``blobs`` by hash (no transaction held between pages)."""
        after = b""
        while True:
            async with translated_errors():
                rows = await self._pool.fetch(sql.STORED_BEFORE, cutoff, after, LIST_PAGE)
            for row in rows:
                yield bytes(row["sha256"]).hex()
            if len(rows) < LIST_PAGE:
                return
            after = bytes(rows[-1]["sha256"])

    # ---- deleting ----

    async def _delete(self, sha256: str) -> bool:
        digest = bytes.fromhex(sha256)

        async def attempt() -> bool:
            async with translated_errors(), self._pool.acquire() as conn, conn.transaction():
                blob_id = await conn.fetchval(sql.DELETE_BLOB, digest)
                if blob_id is None:
                    return False
                await conn.execute(sql.DELETE_CHUNKS, blob_id)
                return True

        return await retrying(POSTGRES_RETRIES, attempt)
