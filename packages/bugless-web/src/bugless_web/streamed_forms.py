"""Reading a ``multipart/form-data`` form as it arrives, files and all, without holding a file.

A form that carries files (attaching one on the issue page, the create
form's attachments) is not read by the framework's form parser, which would
hold every file. Its body is parsed as it arrives
(:class:`multipart.PushMultipartParser`): the text fields come first (the
templates put file inputs after every other field, so the order of the
parts is the page's), and each file's bytes go on in chunks of at most
:data:`~bugless_core.attachments.CHUNK_BYTES` while the browser is still
sending. The routes check the CSRF token among the text fields before
acting (:data:`~bugless_web.frontend.CSRF_IN_STREAM`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, TypeAlias

from litestar import Request
from multipart import MultipartError, MultipartSegment, PushMultipartParser, parse_options_header

from bugless_core import limits
from bugless_core.attachments import CHUNK_BYTES
from bugless_core.errors import BuglessError, InvalidArgument

#: Largest text field (the token, a comment, a description) read before a file.
#: The Model bounds a comment and a description in characters (65,536), and
#: UTF-8 takes up to 4 bytes for one (a browser sends a textarea's line breaks
#: as CRLF: 2 bytes for a character): so none the Model accepts is refused here
#: unread, and a text too long is refused by the Model naming its field, with
#: the form kept.
MAX_TEXT_BYTES = 4 * max(limits.MAX_COMMENT_LENGTH, limits.MAX_DESCRIPTION_LENGTH)
#: Most bytes of all the text fields before a file together: a form holds one
#: long text, not hundreds (a part per custom field value).
MAX_FIELDS_BYTES = 4 * MAX_TEXT_BYTES
#: Most of a refused upload's remaining body read (and dropped) before answering.
DRAIN_BYTES = 64 * 1024 * 1024

#: What the parser yields: a part's headers, a piece of its payload, its end.
Event: TypeAlias = MultipartSegment | bytes | None


async def form_events(
    request: Request[Any, Any, Any], *, max_parts: int = 16
) -> AsyncGenerator[Event, None]:
    """The parser's events for ``request``'s body (a segment, its payload pieces, None at its end).

    Raises:
        InvalidArgument: The body is not ``multipart/form-data``, is malformed,
            or has more than ``max_parts`` parts.
    """
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = str(options.get("boundary", ""))
    if kind != "multipart/form-data" or not boundary:
        raise InvalidArgument("content-type: this form is sent as multipart/form-data")
    try:
        with PushMultipartParser(boundary, max_segment_count=max_parts) as parser:
            async for piece in request.stream():
                for event in parser.parse(piece):
                    yield event
    except MultipartError as exc:
        raise InvalidArgument(f"the form's body is not valid multipart: {exc}") from None


async def fields_until_file(
    events: AsyncIterator[Event], file_field: str
) -> tuple[list[tuple[str, str]], MultipartSegment | None]:
    """The text fields before the first part named ``file_field``, and that part (None: no file).

    The fields are (name, value) pairs in the form's order, a name repeated
    for each value (checkboxes).
    """
    fields: list[tuple[str, str]] = []
    name, value = "", bytearray()
    total = 0
    async for event in events:
        if isinstance(event, MultipartSegment):
            if event.name == file_field:
                return fields, event
            name, value = event.name or "", bytearray()
        elif event is None:
            fields.append((name, value.decode("utf-8", "replace")))
        else:
            value += event
            total += len(event)
            if len(value) > MAX_TEXT_BYTES:
                raise InvalidArgument(f"{name}: longer than {MAX_TEXT_BYTES} bytes")
            if total > MAX_FIELDS_BYTES:
                raise InvalidArgument(f"the form's fields: more than {MAX_FIELDS_BYTES} bytes")
    return fields, None


async def file_chunks(events: AsyncIterator[Event]) -> AsyncIterator[bytes]:
    """The current file part's payload in chunks of at most CHUNK_BYTES, ending with the part."""
    async for event in events:
        if event is None:
            return
        if isinstance(event, bytes):
            for start in range(0, len(event), CHUNK_BYTES):
                yield event[start : start + CHUNK_BYTES]


async def next_file(events: AsyncIterator[Event], file_field: str) -> MultipartSegment | None:
    """The next part named ``file_field`` (others are skipped), or None at the body's end.

    Call it once the previous part was read to its end (or skipped with
    :func:`skip_part`).
    """
    async for event in events:
        if isinstance(event, MultipartSegment) and event.name == file_field:
            return event
    return None


async def skip_part(events: AsyncIterator[Event], *, limit: int = DRAIN_BYTES) -> bool:
    """Read the rest of the current part and drop it; False when it was longer than ``limit``."""
    read = 0
    async for event in events:
        if event is None:
            return True
        if isinstance(event, bytes):
            read += len(event)
            if read > limit:
                return False
    return True


async def drain(events: AsyncGenerator[Event, None]) -> None:
    """Read what the browser still sends (bounded), so it sees the answer, then close."""
    read = 0
    with contextlib.suppress(BuglessError, RuntimeError):
        async for event in events:
            if isinstance(event, bytes):
                read += len(event)
                if read > DRAIN_BYTES:
                    break
    await events.aclose()
