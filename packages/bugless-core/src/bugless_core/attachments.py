"""Rules for attachments that every backend and frontend applies the same way.

One home for: the deployment's attachment settings (size limits per file and
per issue, accepted content types), the sanitising of a file name, sniffing
what content really is from its first bytes, and the errors a broken rule
gives. The Model applies them when a file is uploaded; the web tier uses
:func:`is_inline_type` to decide what a browser may show rather than save.

Why sniff: the declared type is whatever the uploader's client said, and a
browser trusting it (or sniffing on its own) is how an uploaded HTML page
runs script on the tracker's origin. The Model records both; frontends serve
the sniffed one, and only a few harmless types ever inline.
"""

from __future__ import annotations

import unicodedata
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bugless_core.blobs import describe_size
from bugless_core.errors import (
    ContentGone,
    InvalidArgument,
    RangeNotSatisfiable,
    SizeLimitExceeded,
)
from bugless_core.settings import setting

if TYPE_CHECKING:
    from bugless_proto import v1

MiB = 1024 * 1024
#: Longest sanitised file name, in characters (what most file systems take).
MAX_NAME_CHARS = 255
#: Longest file name accepted in a header, before sanitising.
MAX_RAW_NAME_CHARS = 4096
#: Longest content type accepted in a header.
MAX_CONTENT_TYPE_LENGTH = 255
#: Largest chunk one UploadAttachment message may carry.
MAX_CHUNK_BYTES = 1 * MiB
#: The chunk size clients and servers send: well under gRPC's 4 MiB message
#: limit, and the ``database`` store's row size, so a download sends each row
#: as it was read, without cutting (and copying) it; per-message overhead
#: (encode, decode, one HTTP/2 frame) is then paid every 512 KiB.
CHUNK_BYTES = 512 * 1024
#: Attachments one issue may have (deleted ones not counted): bounds a listing.
MAX_ATTACHMENTS_PER_ISSUE = 500
#: How many leading bytes :func:`sniff_content_type` looks at.
SNIFF_BYTES = 4096
#: The type of content nothing more specific is known about.
OCTET_STREAM = "application/octet-stream"
#: Content a browser may display in the page that links it: raster images and
#: plain text. Never SVG (it can carry script), never HTML.
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "text/plain"})
#: Images the web tier shows as thumbnails (a subset of :data:`INLINE_TYPES`).
IMAGE_TYPES = frozenset(t for t in INLINE_TYPES if t.startswith("image/"))

#: Characters that reorder or hide text (bidirectional overrides and
#: isolates, marks): "invoice\u202etxt.exe" must not read as "invoiceexe.txt".
_FORMAT_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


@dataclass(frozen=True)
class AttachmentSettings:
    """What a deployment accepts as attachments (``bugless model serve``).

    Attributes:
        max_file_bytes: Largest file (``BUGLESS_ATTACHMENT_MAX_FILE_BYTES``).
        max_issue_bytes: Largest total of one issue's attachments, deleted
            and redacted ones not counted (``BUGLESS_ATTACHMENT_MAX_ISSUE_BYTES``).
        allowed_types: Content types accepted, ``image/*`` style patterns
            allowed; empty accepts every type not denied.
        denied_types: Content types refused, whatever ``allowed_types`` says.
        sweep_seconds: Period of the Model's sweep of orphaned content (0: off).
        orphan_grace_seconds: How old stored content no attachment refers to
            must be before the sweep removes it: longer than any upload takes
            from its first byte to being attached, so content of an upload in
            progress is never taken.
    """

    max_file_bytes: int = setting(
        256 * MiB,
        env="BUGLESS_ATTACHMENT_MAX_FILE_BYTES",
        help="Largest attachment, in bytes.",
    )
    max_issue_bytes: int = setting(
        1024 * MiB,
        env="BUGLESS_ATTACHMENT_MAX_ISSUE_BYTES",
        help="Largest total size of one issue's attachments, in bytes.",
    )
    allowed_types: tuple[str, ...] = setting(
        (),
        env="BUGLESS_ATTACHMENT_ALLOWED_TYPES",
        help="Comma-separated content types accepted (image/* patterns); empty: all.",
    )
    denied_types: tuple[str, ...] = setting(
        (),
        env="BUGLESS_ATTACHMENT_DENIED_TYPES",
        help="Comma-separated content types refused (image/* patterns).",
    )
    sweep_seconds: float = setting(
        3600.0,
        env="BUGLESS_ATTACHMENT_SWEEP_SECONDS",
        help="How often to remove orphaned attachment content (0: never).",
    )
    orphan_grace_seconds: float = setting(
        86400.0,
        env="BUGLESS_ATTACHMENT_ORPHAN_GRACE_SECONDS",
        help="Age before content no attachment refers to is removed by the sweep.",
    )

    def __post_init__(self) -> None:
        if self.max_file_bytes < 0 or self.max_issue_bytes < 0:
            raise ValueError("attachment size limits must not be negative")
        if self.sweep_seconds < 0 or self.orphan_grace_seconds < 0:
            raise ValueError("attachment sweep durations must not be negative")
        for name in ("allowed_types", "denied_types"):
            patterns = tuple(p.strip().lower() for p in getattr(self, name) if p.strip())
            object.__setattr__(self, name, patterns)


def sanitise_name(name: str) -> str:
    r"""The file name to store and show: its last path segment, nothing hidden in it.

    Drops directories (``/`` and ``\\``), control characters, bidirectional
    overrides and other invisible formatting, surrounding spaces and dots;
    keeps the extension when cutting to :data:`MAX_NAME_CHARS`. A name with
    nothing left is ``"attachment"``.
    """
    text = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(ch for ch in text if unicodedata.category(ch) not in _FORMAT_CATEGORIES)
    text = " ".join(text.split()).strip(" .")
    if not text:
        return "attachment"
    if len(text) > MAX_NAME_CHARS:
        stem, dot, suffix = text.rpartition(".")
        if dot and stem and len(suffix) <= 16:
            text = stem[: MAX_NAME_CHARS - len(suffix) - 1].rstrip(" .") + "." + suffix
        else:
            text = text[:MAX_NAME_CHARS].rstrip(" .")
    return text


def normalise_type(content_type: str) -> str:
    """``type/subtype`` in lower case, parameters dropped (``""`` when not a MIME type)."""
    base = content_type.split(";", 1)[0].strip().lower()
    major, slash, minor = base.partition("/")
    if not slash or not major or not minor or any(c.isspace() for c in base):
        return ""
    return base


def _matches(content_type: str, pattern: str) -> bool:
    if pattern in ("*", "*/*"):
        return True
    if pattern.endswith("/*"):
        return content_type.startswith(pattern[:-1])
    return content_type == pattern


def check_content_type(settings: AttachmentSettings, content_type: str, what: str) -> None:
    """Refuse a type the deployment does not accept.

    Raises:
        InvalidArgument: naming ``what`` (``content_type`` for the declared
            type, ``content`` for the sniffed one) and the setting at play.
    """
    kind = normalise_type(content_type) or OCTET_STREAM
    if any(_matches(kind, p) for p in settings.denied_types):
        msg = (
            f"{what}: files of type {kind} are not accepted here "
            f"(BUGLESS_ATTACHMENT_DENIED_TYPES: {', '.join(settings.denied_types)})"
        )
        raise InvalidArgument(msg, metadata={"field": what})
    if settings.allowed_types and not any(_matches(kind, p) for p in settings.allowed_types):
        msg = (
            f"{what}: files of type {kind} are not accepted here; accepted: "
            f"{', '.join(settings.allowed_types)} (BUGLESS_ATTACHMENT_ALLOWED_TYPES)"
        )
        raise InvalidArgument(msg, metadata={"field": what})


def file_too_large(limit: int) -> SizeLimitExceeded:
    """The error of a file over the per-file limit."""
    msg = (
        f"the file is larger than the limit of {describe_size(limit)} ({limit} bytes) per file "
        "(BUGLESS_ATTACHMENT_MAX_FILE_BYTES); nothing was stored"
    )
    return SizeLimitExceeded(msg, limit_bytes=limit)


def issue_too_large(limit: int, used: int) -> SizeLimitExceeded:
    """The error of an upload that would take an issue past the per-issue limit."""
    msg = (
        f"the issue's attachments would exceed the limit of {describe_size(limit)} "
        f"({limit} bytes) per issue (BUGLESS_ATTACHMENT_MAX_ISSUE_BYTES; "
        f"{describe_size(used)} used); nothing was stored"
    )
    return SizeLimitExceeded(msg, limit_bytes=limit)


_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
    (b"PK\x03\x04", "application/zip"),
    (b"\x1f\x8b", "application/gzip"),
    (b"\xfd7zXZ\x00", "application/x-xz"),
    (b"(\xb5/\xfd", "application/zstd"),
    (b"BZh", "application/x-bzip2"),
    (b"\x7fELF", "application/x-executable"),
    (b"MZ", "application/x-msdownload"),
)
#: Openings that make a browser treat text as HTML (the WHATWG sniffing
#: table's tags), checked after leading whitespace, case-insensitively.
_HTML_OPENINGS = (
    b"<!doctype html", b"<html", b"<head", b"<script", b"<iframe", b"<h1", b"<div",
    b"<font", b"<table", b"<a", b"<style", b"<title", b"<b", b"<body", b"<br", b"<p",
    b"<!--",
)  # fmt: skip
_TAG_ENDS = (b"", b" ", b">", b"\t", b"\n", b"\r", b"\x0c", b"/")


def content_gone(attachment: v1.Attachment) -> ContentGone | None:
    """ContentGone for an attachment whose content was removed for good, else None.

    A deleted attachment (the message names the issue's entry that deleted
    it) or a redacted one: a download asked for it, or one whose content
    went while it was opened or read, says that, not that storage lost it.
    """
    gone = "was redacted" if attachment.redacted else ""
    if attachment.deleted_in_version:
        gone = f"was deleted (entry {attachment.deleted_in_version} of its issue)"
    if not gone:
        return None
    return ContentGone(
        f"attachment {attachment.id} {gone}: its content is gone",
        metadata={"attachment_id": str(attachment.id)},
    )


def check_download_offset(attachment: v1.Attachment, offset: int) -> None:
    """Refuse a download that starts past the attachment's end, naming it and its size.

    An offset equal to the size is a download of nothing (a client resuming
    one that had everything already); beyond it there is nothing to read.
    Checked against the attachment before its content is opened, so the
    caller hears about the attachment, not the store's blob.

    Raises:
        RangeNotSatisfiable: ``offset`` is past the end (OUT_OF_RANGE, HTTP 416).
    """
    if offset > attachment.size:
        raise RangeNotSatisfiable(
            f"offset: {offset} is past the end of attachment {attachment.id} "
            f"({attachment.size} bytes); a download starts at 0 to {attachment.size}",
            size=attachment.size,
        )


def sniff_content_type(head: bytes) -> str:
    """What content is, judged from its first bytes (up to :data:`SNIFF_BYTES`).

    Recognises common images, archives, PDF, executables, SVG and HTML
    (which must never be served as such), and UTF-8 text; anything else is
    :data:`OCTET_STREAM`.
    """
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    if b"<svg" in text[:1024] and (text.startswith((b"<?xml", b"<svg", b"<!doctype svg"))):
        return "image/svg+xml"
    for tag in _HTML_OPENINGS:
        after = text[len(tag) : len(tag) + 1]
        if text.startswith(tag) and (tag == b"<!--" or after in _TAG_ENDS):
            return "text/html"
    if text.startswith(b"<?xml"):
        return "application/xml"
    if _is_text(head):
        return "text/plain"
    return OCTET_STREAM


def _is_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        decoded = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # The sample may end inside a character.
        if exc.start < len(head) - 3 or exc.reason != "unexpected end of data":
            return False
        decoded = head[: exc.start].decode("utf-8")
    controls = sum(1 for ch in decoded if ch < " " and ch not in "\t\n\r\f\x1b")
    return controls * 100 <= len(decoded)


def is_inline_type(content_type: str) -> bool:
    """Whether a browser may show content of this (sniffed) type in place."""
    return normalise_type(content_type) in INLINE_TYPES


class SniffedChunks:
    """Passes chunks through, keeping their first :data:`SNIFF_BYTES` to sniff at the end."""

    def __init__(self, chunks: AsyncIterable[bytes]) -> None:
        self._chunks = aiter(chunks)
        self._head = bytearray()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        chunk = await anext(self._chunks)
        if len(self._head) < SNIFF_BYTES:
            self._head += chunk[: SNIFF_BYTES - len(self._head)]
        return chunk

    def content_type(self) -> str:
        """The sniffed type of what went through."""
        return sniff_content_type(bytes(self._head))
