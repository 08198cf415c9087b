"""Content-addressed blob stores: where attachment content lives.

Attachment *metadata* belongs to the Model's tables; the *content* goes to a
blob store, chosen per deployment by name (``BUGLESS_BLOB_STORE``) from the
stores that installed plugins register, exactly like Model backends.
``database`` (bugless-model-postgres) keeps chunks in the Model's own
database; ``s3`` (bugless-blob-s3) uses any S3-compatible object store.

Every store is content-addressed by the SHA-256 of the content, so the same
file attached twice is stored once, and a reference can never point at
different bytes than it did when it was written. Content streams both ways:
:meth:`BlobStore.put` consumes an async iterator of chunks and learns the
hash only at its end; :meth:`BlobStore.open` yields chunks. No store ever
holds a whole blob in memory.

The public methods here do the work every store must do identically (hashing,
counting, the size limit, checking hashes and ranges) and call a few
protected abstract methods for the storage itself, so a rule lives in one
place and the conformance suite (``bugless_testing.blob_contracts``)
checks the stores, not re-implementations of the rules.
"""

from __future__ import annotations

import enum
import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

from bugless_core.errors import (
    BuglessError,
    InvalidArgument,
    NotFound,
    RangeNotSatisfiable,
    SizeLimitExceeded,
)
from bugless_core.settings import settings_from_environ

if TYPE_CHECKING:
    from bugless_core.registry import Registry

#: Environment variable naming the blob store a deployment uses.
STORE_ENV = "BUGLESS_BLOB_STORE"
#: The store used when ``BUGLESS_BLOB_STORE`` is not set.
DEFAULT_STORE = "database"
#: SHA-256 of the empty content: every store holds it without writing anything.
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
S = TypeVar("S")


class BlobCapability(enum.StrEnum):
    """Optional properties a store may have, depending on how it is configured."""

    #: The storage service encrypts content at rest with keys it manages
    #: (S3 ``AES256`` or ``aws:kms``).
    SERVER_SIDE_ENCRYPTION = "server_side_encryption"


@dataclass(frozen=True)
class BlobRef:
    """What identifies stored content: its SHA-256 (lower-case hex) and its size in bytes."""

    sha256: str
    size: int


def check_sha256(value: str, field: str = "sha256") -> str:
    """``value`` if it is a SHA-256 in lower-case hex.

    Stores build keys and queries from the hash; checking it first means a
    malformed one is a clear InvalidArgument, never a path or key injection.

    Raises:
        InvalidArgument: naming ``field``.
    """
    if not isinstance(value, str) or not _SHA256.match(value):
        msg = f"{field}: {value!r} is not a SHA-256 (64 lower-case hexadecimal digits)"
        raise InvalidArgument(msg)
    return value


def resolve_range(size: int, offset: int, length: int | None) -> tuple[int, int]:
    """The ``(offset, length)`` actually readable from a blob of ``size`` bytes.

    Like an HTTP range, a length running past the end is cut at the end; an
    offset past the end is an error (the web tier answers it with 416).

    Raises:
        InvalidArgument: negative offset or length.
        RangeNotSatisfiable: offset beyond the end.
    """
    if offset < 0:
        raise InvalidArgument(f"offset: {offset} is negative; ranges start at 0")
    if length is not None and length < 0:
        raise InvalidArgument(f"length: {length} is negative; use a length of 0 or more")
    if offset > size:
        msg = f"offset: {offset} is past the end of the {size}-byte blob"
        raise RangeNotSatisfiable(msg, size=size)
    available = size - offset
    return offset, available if length is None else min(length, available)


def describe_size(size: int) -> str:
    """``size`` in bytes for a person: "10 MiB", "1.5 GiB", "512 bytes"."""
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            text = f"{value:.1f}".removesuffix(".0") if unit != "bytes" else str(size)
            return f"{text} {unit}"
        value /= 1024
    raise AssertionError  # pragma: no cover - the loop returns at GiB


class BlobUpload:
    """The content of one :meth:`BlobStore.put`, hashed, counted and bounded as it streams.

    A store iterates over it (or over :meth:`pieces`) to the end and then
    stores what it received under :meth:`ref`. Empty chunks are dropped.
    Iterating past ``max_size`` raises :class:`SizeLimitExceeded` in the
    middle of the store's write, which is exactly where the store must then
    undo what it wrote.
    """

    def __init__(self, chunks: AsyncIterable[bytes], max_size: int | None) -> None:
        self._source: AsyncIterator[object] = aiter(chunks)
        self._hash = hashlib.sha256()
        self._size = 0
        self._max_size = max_size
        self._done = False

    @property
    def size(self) -> int:
        """Bytes received so far."""
        return self._size

    @property
    def done(self) -> bool:
        """Whether the content has been read to its end."""
        return self._done

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        while True:
            try:
                chunk = await anext(self._source)
            except StopAsyncIteration:
                self._done = True
                raise
            if not isinstance(chunk, bytes | bytearray | memoryview):
                msg = f"a blob is written from bytes chunks, not {type(chunk).__name__}"
                raise TypeError(msg)
            if not chunk:
                continue
            data = bytes(chunk)
            if self._max_size is not None and self._size + len(data) > self._max_size:
                msg = (
                    f"the content is larger than the limit of {describe_size(self._max_size)} "
                    f"({self._max_size} bytes); nothing was stored"
                )
                raise SizeLimitExceeded(msg, limit_bytes=self._max_size)
            self._hash.update(data)
            self._size += len(data)
            return data

    async def pieces(self, size: int) -> AsyncGenerator[bytes, None]:
        """The content cut into pieces of exactly ``size`` bytes, the last one shorter.

        Stores that address content by piece number (database rows, multipart
        parts) need equal pieces whatever chunks the caller sent; at most one
        piece plus one incoming chunk is held in memory.
        """
        if size < 1:
            raise ValueError("piece size must be at least 1 byte")
        # Chunks are kept as they came and joined once per piece: a growing
        # bytearray would be copied on every resize and again when sliced.
        held: list[bytes] = []
        held_bytes = 0
        async for chunk in self:
            start = 0
            while len(chunk) - start >= size - held_bytes:
                end = start + size - held_bytes
                held.append(chunk[start:end] if (start, end) != (0, len(chunk)) else chunk)
                piece = b"".join(held)
                held.clear()
                held_bytes = 0
                start = end
                yield piece
                del piece
            if start < len(chunk):
                held.append(chunk[start:] if start else chunk)
                held_bytes += len(chunk) - start
        if held:
            yield b"".join(held)

    def ref(self) -> BlobRef:
        """The hash and size of the whole content; only once it has been read to the end."""
        if not self._done:
            raise RuntimeError("the upload has not been read to its end yet")
        return BlobRef(self._hash.hexdigest(), self._size)


class BlobReader:
    """An opened blob: which bytes will come, and the chunks themselves.

    Iterate with ``async for``; a reader not read to the end should be
    closed (``async with await store.open(...) as reader``) so the store can
    release its connection or response at once.

    Attributes:
        ref: The whole blob's hash and size (for ETag and Content-Length).
        offset: First byte this reader yields.
        length: How many bytes it yields in all.
    """

    def __init__(
        self, ref: BlobRef, offset: int, length: int, chunks: AsyncGenerator[bytes, None]
    ) -> None:
        self.ref = ref
        self.offset = offset
        self.length = length
        self._chunks = chunks
        self._yielded = 0
        self._first: bytes | None = None

    async def _start(self) -> None:
        """Read the first chunk now, kept for the first ``anext``.

        :meth:`BlobStore.open` calls it, so that content deleted between the
        existence check and the store's first read (an S3 GET, a database
        store's first batch) fails the open, before its caller has sent
        anything, instead of the first read of a response already under
        way. The generator is started, so :meth:`aclose` releases what it
        holds even if nothing more is read.
        """
        try:
            self._first = await anext(self._chunks)
        except StopAsyncIteration:
            pass  # the next anext ends again, and says how many bytes came
        except BaseException:
            await self._chunks.aclose()
            raise

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        chunk, self._first = self._first, None
        if chunk is None:
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                if self._yielded != self.length:
                    msg = (
                        f"blob {self.ref.sha256}: the store returned {self._yielded} of "
                        f"{self.length} bytes"
                    )
                    raise BuglessError(msg) from None
                raise
        self._yielded += len(chunk)
        return chunk

    async def aclose(self) -> None:
        """Stop reading and release what the store holds for this reader."""
        await self._chunks.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


async def _no_chunks() -> AsyncGenerator[bytes, None]:
    return
    yield  # pragma: no cover - makes this an async generator


class BlobStore(ABC):
    """Async, content-addressed storage of attachment content.

    Lifecycle: :meth:`connect` (with the store's own settings), calls, then
    :meth:`close`. Every method may be called concurrently.

    Guarantees every store gives (checked by the conformance suite):

    * :meth:`put` stores content once per SHA-256, however often and however
      concurrently it is written; a put that fails (a broken stream, the size
      limit, a lost connection) leaves nothing behind;
    * :meth:`open` streams exactly the stored bytes (or a range of them);
    * missing content is :class:`~bugless_core.errors.NotFound`.

    Deleting is the caller's decision: a store deletes when told, and the
    caller (the Model) must make sure no attachment still references the
    hash, taking care of a concurrent put of the same content that found it
    present a moment before the delete.
    """

    #: Name a deployment selects with ``BUGLESS_BLOB_STORE``.
    name: ClassVar[str]
    #: The settings dataclass :meth:`connect` takes; its fields are declared
    #: with :func:`bugless_core.settings.setting`, so
    #: :func:`bugless_core.settings.settings_from_environ` can fill it.
    settings_type: ClassVar[type[Any]]

    @property
    def capabilities(self) -> frozenset[BlobCapability]:
        """What this store, as configured, offers beyond the base contract."""
        return frozenset()

    # ---- lifecycle ----

    @classmethod
    @abstractmethod
    async def connect(cls, settings: Any) -> Self:
        """Open the store with an instance of :attr:`settings_type`.

        Raises:
            FailedPrecondition: the storage is not set up (schema not migrated,
                bucket missing), with what to run.
            Unavailable: the storage cannot be reached.
        """

    @abstractmethod
    async def close(self) -> None:
        """Release connections; in-flight calls have finished by then."""

    @abstractmethod
    async def check_ready(self) -> bool:
        """Whether the storage answers now (drives the service's health status)."""

    # ---- the contract callers use ----

    async def put(self, chunks: AsyncIterable[bytes], *, max_size: int | None = None) -> BlobRef:
        """Store content streamed as chunks; return its hash and size.

        Content already stored is not stored again. Stores write as the
        chunks arrive (the hash is known only at the end) and undo the write
        when the put fails, so a failed put leaves nothing behind.

        Args:
            chunks: The content, in chunks of any size (empty chunks allowed).
            max_size: Refuse content larger than this many bytes.

        Raises:
            SizeLimitExceeded: the content exceeded ``max_size`` (nothing stored).
            InvalidArgument: ``max_size`` is negative.
        """
        if max_size is not None and max_size < 0:
            raise InvalidArgument(f"max_size: {max_size} is negative")
        upload = BlobUpload(chunks, max_size)
        await self._put(upload)
        return upload.ref()

    async def open(self, sha256: str, *, offset: int = 0, length: int | None = None) -> BlobReader:
        """Open stored content for reading, all of it or ``length`` bytes from ``offset``.

        The existence check, the range check and the first read happen
        here, so a web handler can answer 404 or 416 before it starts a
        response, also when the content is deleted between the check and the
        read (content deleted later ends the read with NotFound where the
        store cannot hold on to it: an S3 GET under way reads to its end).

        Raises:
            NotFound: no content with this hash.
            InvalidArgument: a malformed hash, or a range outside the blob.
        """
        ref = await self.stat(sha256)
        offset, length = resolve_range(ref.size, offset, length)
        chunks = self._read(ref, offset, length) if length else _no_chunks()
        reader = BlobReader(ref, offset, length, chunks)
        await reader._start()
        return reader

    async def stat(self, sha256: str) -> BlobRef:
        """The stored content's hash and size.

        Raises:
            NotFound: no content with this hash.
            InvalidArgument: a malformed hash.
        """
        size = await self._size(check_sha256(sha256))
        if size is None:
            raise self._not_found(sha256)
        return BlobRef(sha256, size)

    async def exists(self, sha256: str) -> bool:
        """Whether content with this hash is stored."""
        return await self._size(check_sha256(sha256)) is not None

    async def delete(self, sha256: str) -> bool:
        """Remove the content; return whether there was any (deleting twice is fine)."""
        return await self._delete(check_sha256(sha256))

    def stored_before(self, cutoff: datetime) -> AsyncIterator[str]:
        """Hashes of content stored (last written) before ``cutoff``, in no particular order.

        What the Model's sweep of orphaned content walks: content a Model
        stored but never attached (it died in between) is found here, since
        nothing else knows of it. Deleting content while iterating is allowed.
        """
        return self._stored_before(cutoff)

    async def remove_abandoned(self, cutoff: datetime) -> int:
        """Remove what puts started before ``cutoff`` left unfinished; return how many.

        A put that fails removes what it wrote, but a process killed mid-put
        cannot: stores whose writes are not transactional (an S3 multipart
        upload, a temporary object) leave them, and clean up here. The
        default finds nothing, right for a store whose unfinished writes
        vanish with their transaction.
        """
        del cutoff
        return 0

    # ---- what a store implements ----

    @abstractmethod
    async def _put(self, upload: BlobUpload) -> None:
        """Consume ``upload`` to its end and make its content retrievable by ``upload.ref()``.

        If the content is already stored, store nothing more. If anything
        fails (including :class:`SizeLimitExceeded` raised by the upload
        itself), remove everything written so far and let the error through.
        """

    @abstractmethod
    async def _size(self, sha256: str) -> int | None:
        """Size of the content stored under ``sha256``, None if there is none."""

    @abstractmethod
    def _read(self, ref: BlobRef, offset: int, length: int) -> AsyncGenerator[bytes, None]:
        """Yield exactly ``length`` (> 0) bytes from ``offset``, in chunks.

        Raise NotFound if the content disappears while it is being read.
        """

    @abstractmethod
    async def _delete(self, sha256: str) -> bool:
        """Remove the content if it is stored; return whether it was."""

    @abstractmethod
    def _stored_before(self, cutoff: datetime) -> AsyncIterator[str]:
        """Yield the hash of every content stored before ``cutoff`` (paged, not all at once)."""

    def _not_found(self, sha256: str) -> NotFound:
        return NotFound(f"blob {sha256}: no such content in the {self.name} blob store")


async def connect_blob_store(
    stores: Registry[type[BlobStore]], environ: Mapping[str, str]
) -> BlobStore:
    """Connect the store ``BUGLESS_BLOB_STORE`` names, with its settings from ``environ``.

    Raises:
        UnknownBackendError: no installed plugin registered that name (the
            message lists the installed ones).
        InvalidArgument: a setting of the store is missing or malformed.
    """
    name = environ.get(STORE_ENV, "") or DEFAULT_STORE
    cls = stores.get(name)
    settings = settings_from_environ(cls.settings_type, environ)  # InvalidArgument if bad
    return await cls.connect(settings)
