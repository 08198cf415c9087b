"""Attaching a file without script: a plain ``multipart/form-data`` POST, streamed.

The issue page's attachment list carries a small form (a file input and a
button) that works in a browser with JavaScript off. Its body is not read
by the framework's form parser, which would hold the whole file: it is
parsed as it arrives (:class:`multipart.PushMultipartParser`), and the
file's bytes go to the Model in chunks of at most
:data:`~bugless_core.attachments.CHUNK_BYTES` while the browser is still
sending, exactly like the script's raw upload.

**CSRF as every form.** The token is the form's first field (``_csrf``),
so it is read, and checked, before a byte of the file is: the generic
check (which would parse the whole body) leaves this route to do it
(:data:`~bugless_web.frontend.CSRF_IN_STREAM`).

**Limits.** The Model refuses a file over the per-file or per-issue limit
as soon as it has seen too many bytes; the page then answers 413 naming the
limit. The rest of the body is read and dropped first (up to
:data:`DRAIN_BYTES`), so the browser shows the answer rather than a reset
connection. An upload has no fixed deadline but must keep moving
(:mod:`bugless_web.transfers`): a browser that stops sending gets a 408 page,
its body no longer read.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, TypeAlias

from litestar import Request, Response, post
from litestar.params import FromPath
from multipart import MultipartError, MultipartSegment, PushMultipartParser, parse_options_header

from bugless_core.attachments import CHUNK_BYTES
from bugless_core.errors import BuglessError, InvalidArgument
from bugless_proto import v1
from bugless_web.frontend import (
    CSRF_IN_STREAM,
    audit,
    frontend_of,
    path_id,
    redirect,
    require_csrf,
    session_of,
    viewer_of,
)
from bugless_web.transfers import UploadStalled

#: The form's file input.
FILE_FIELD = "file"
#: Largest text field (the token, the optional comment) read before the file.
MAX_TEXT_BYTES = 64 * 1024
#: Most of a refused upload's remaining body read (and dropped) before answering.
DRAIN_BYTES = 64 * 1024 * 1024

#: What the parser yields: a part's headers, a piece of its payload, its end.
Event: TypeAlias = MultipartSegment | bytes | None


async def _events(body: AsyncIterator[bytes], boundary: str) -> AsyncGenerator[Event, None]:
    """The parser's events (a segment, its payload pieces, ``None`` at its end) as bytes arrive."""
    try:
        with PushMultipartParser(boundary, max_segment_count=16) as parser:
            async for piece in body:
                for event in parser.parse(piece):
                    yield event
    except MultipartError as exc:
        raise InvalidArgument(f"the form's body is not valid multipart: {exc}") from None


def _boundary(request: Request[Any, Any, Any]) -> str:
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get("boundary", "")
    if kind != "multipart/form-data" or not boundary:
        raise InvalidArgument("content-type: this form is sent as multipart/form-data")
    return str(boundary)


async def _fields_then_file(
    events: AsyncIterator[Event],
) -> tuple[dict[str, str], MultipartSegment | None]:
    """The text fields before the file part, and the file part's segment (None: no file)."""
    fields: dict[str, str] = {}
    name, value = "", bytearray()
    async for event in events:
        if isinstance(event, MultipartSegment):
            if event.name == FILE_FIELD:
                return fields, event
            name, value = event.name or "", bytearray()
        elif event is None:
            fields[name] = value.decode("utf-8", "replace")
        else:
            value += event
            if len(value) > MAX_TEXT_BYTES:
                raise InvalidArgument(f"{name}: longer than {MAX_TEXT_BYTES} bytes")
    return fields, None


async def _file_chunks(events: AsyncIterator[Event]) -> AsyncIterator[bytes]:
    """The file part's payload in chunks of at most CHUNK_BYTES, ending with the part."""
    async for event in events:
        if event is None:
            return
        if isinstance(event, bytes):
            for start in range(0, len(event), CHUNK_BYTES):
                yield event[start : start + CHUNK_BYTES]


async def _drain(events: AsyncGenerator[Event, None]) -> None:
    """Read what the browser still sends (bounded), so it sees the answer."""
    read = 0
    with contextlib.suppress(BuglessError, RuntimeError):
        async for event in events:
            if isinstance(event, bytes):
                read += len(event)
                if read > DRAIN_BYTES:
                    break
    await events.aclose()


@post(
    "/issues/{issue_text:str}/attachments/form",
    request_max_body_size=None,
    opt={CSRF_IN_STREAM: True},
)
async def attach_by_form(
    request: Request[Any, Any, Any], issue_text: FromPath[str]
) -> Response[Any]:
    """Attach the form's file (no script needed); back to the issue, or an error page.

    Errors are pages with the error's status: 403 for a missing token, 413
    naming the limit for a file too large, 400 for no file chosen, 408 when
    the browser stopped sending.
    """
    frontend_of(request).drain.requests.count_as_transfer()
    viewer = await viewer_of(request)
    events = _events(request.stream(), _boundary(request))
    try:
        fields, part = await _fields_then_file(events)
        require_csrf(request, fields.get("_csrf", ""))
        issue_id = path_id(issue_text, "issue_id")
        if part is None or not part.filename:
            raise InvalidArgument(f"{FILE_FIELD}: choose a file to attach")
        header = v1.UploadAttachmentHeader(
            caller=viewer.caller,
            issue_id=issue_id,
            name=part.filename,
            content_type=(part.content_type or "")[:255],
            comment=fields.get("comment", "").strip(),
        )

        async def messages() -> AsyncIterator[v1.UploadAttachmentRequest]:
            yield v1.UploadAttachmentRequest(header=header)
            async for chunk in _file_chunks(events):
                yield v1.UploadAttachmentRequest(chunk=chunk)

        reply = await frontend_of(request).backends.upload_attachment(messages())
    except (UploadStalled, asyncio.CancelledError):
        # The browser stopped sending: waiting for the rest would wait forever;
        # or the request was cancelled (the server's drain cut it): it ends now.
        await events.aclose()
        raise
    except BaseException:
        await _drain(events)
        raise
    await _drain(events)
    attachment = reply.attachment or v1.Attachment()
    audit(viewer, "attach", f"issue {issue_id}", attachment_id=attachment.id)
    session_of(request).update(notice=f"Attached {attachment.name}.")
    return redirect(f"/issues/{issue_id}#attachments")


ROUTES = [attach_by_form]
