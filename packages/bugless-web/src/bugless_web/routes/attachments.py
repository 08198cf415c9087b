"""Attachments on the web: upload by script, safe download, delete.

**Streaming.** An upload is the raw request body (the page's script sends
the file as it is, with its name in ``X-File-Name``): it is cut into chunks
and forwarded to the Model as it arrives, and a download is forwarded from
the Model to the browser the same way. A replica holds a chunk or two per
transfer, never a file; an upload's first few MiB are kept until the Model
reads them, to send again should a draining Model refuse it
(:func:`bugless_core.failover.upload_again_if_refused`). An upload has no
fixed deadline but must keep moving, and so has a download
(:mod:`bugless_web.transfers`).

**Safe serving.** Nothing uploaded is ever served as a document of this
origin that could run script:

* only raster images and plain text are shown in place (``inline``), by the
  type the Model sniffed, never the declared one; everything else (HTML,
  SVG, PDF, archives, unknown) is ``application/octet-stream`` with
  ``Content-Disposition: attachment``, which browsers save rather than show;
* ``X-Content-Type-Options: nosniff`` stops a browser from deciding that a
  "text/plain" log is HTML after all;
* the download's own ``Content-Security-Policy`` is ``default-src 'none';
  sandbox``: even a document that did render gets a unique opaque origin,
  no script, no plugins, no forms, and no access to this site's cookies or
  pages.

**A download host.** With ``--download-url`` the app origin only checks
access and redirects to the same path on that host name with a sealed,
short-lived token (the attachment and the caller); the download host needs
no cookie, so even a browser bug there cannot reach the tracker's session.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from litestar import Request, Response, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Stream

from bugless_core.attachments import CHUNK_BYTES, is_inline_type, normalise_type
from bugless_core.clients import CURRENT_ASSERTION, call
from bugless_core.errors import BuglessError, NotFound, RangeNotSatisfiable
from bugless_core.ids import MAX_ID
from bugless_proto import v1
from bugless_web.display import attachment_url
from bugless_web.frontend import audit, frontend_of, path_id, redirect, session_of, viewer_of
from bugless_web.transfers import UploadStalled

#: The download response's own policy: an opaque, script-less sandbox.
DOWNLOAD_CSP = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; sandbox"
#: Header carrying the file name of an upload (percent-encoded UTF-8).
NAME_HEADER = "x-file-name"


def content_disposition(attachment: v1.Attachment, *, inline: bool) -> str:
    """RFC 6266: an ASCII ``filename`` fallback and the exact UTF-8 ``filename*``."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\;' else "_"
                       for c in attachment.name)  # fmt: skip
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(attachment.name, safe='')}"


def serving_headers(attachment: v1.Attachment, length: int) -> dict[str, str]:
    """The headers a download is sent with (see the module's docstring)."""
    inline = is_inline_type(attachment.content_type) and not attachment.redacted
    kind = normalise_type(attachment.content_type) if inline else "application/octet-stream"
    if kind == "text/plain":
        kind = "text/plain; charset=utf-8"
    return {
        "content-type": kind,
        "content-length": str(length),
        "content-disposition": content_disposition(attachment, inline=inline),
        "content-security-policy": DOWNLOAD_CSP,
        "x-content-type-options": "nosniff",
        "cross-origin-resource-policy": "same-origin",
        "accept-ranges": "bytes",
        "cache-control": "private, no-store",
    }


async def _rechunked(body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The request body in chunks of at most :data:`CHUNK_BYTES` (whatever the server read)."""
    async for piece in body:
        for start in range(0, len(piece), CHUNK_BYTES):
            yield piece[start : start + CHUNK_BYTES]


@post("/issues/{issue_text:str}/attachments", request_max_body_size=None)
async def upload_attachment(
    request: Request[Any, Any, Any], issue_text: FromPath[str]
) -> Response[Any]:
    """Attach the request body as a file (the page's script; the name in ``X-File-Name``).

    Answers JSON: 201 with the attachment, or the error's status (413 over
    a size limit, naming it; 408 when the browser stopped sending, see
    :mod:`bugless_web.transfers`) with its message; nothing is kept on failure.
    """
    frontend_of(request).drain.requests.count_as_transfer()
    issue_id = path_id(issue_text, "issue_id")
    viewer = await viewer_of(request)
    name = unquote(request.headers.get(NAME_HEADER, ""))
    declared = request.headers.get("content-length", "")
    header = v1.UploadAttachmentHeader(
        caller=viewer.caller,
        issue_id=issue_id,
        name=name,
        content_type=request.headers.get("content-type", "")[:255],
        # A length past int64 (which no upload reaches) is sent as the
        # largest: the Model refuses it as over its limit, naming it,
        # instead of reading a wrapped, small size.
        size=min(int(declared), MAX_ID) if declared.isdigit() else 0,
    )

    async def messages() -> AsyncIterator[v1.UploadAttachmentRequest]:
        yield v1.UploadAttachmentRequest(header=header)
        async for chunk in _rechunked(request.stream()):
            yield v1.UploadAttachmentRequest(chunk=chunk)

    try:
        reply = await frontend_of(request).backends.upload_attachment(messages())
    except UploadStalled as exc:
        # The browser stopped sending: the rest of its body will not be read.
        headers = {"connection": "close"}
        return Response({"error": exc.message}, status_code=exc.http_status, headers=headers)
    except BuglessError as exc:
        return Response({"error": exc.message}, status_code=exc.http_status)
    attachment = reply.attachment or v1.Attachment()
    audit(viewer, "attach", f"issue {issue_id}", attachment_id=attachment.id)
    return Response(
        {
            "id": str(attachment.id),
            "name": attachment.name,
            "size": attachment.size,
            "content_type": attachment.content_type,
            "url": attachment_url(attachment),
            "version": reply.entry.version if reply.entry else 0,
        },
        status_code=201,
    )


@dataclass(frozen=True)
class ByteRange:
    """A single ``Range: bytes=...`` as asked (RFC 9110 14.1.2), before the size is known.

    Attributes:
        first: The first byte asked for; None for a suffix range (``bytes=-N``).
        last: The last byte asked for (inclusive); None for "to the end". For
            a suffix range, how many bytes from the end.
    """

    first: int | None
    last: int | None

    def wire(self, size: int | None = None) -> tuple[int, int]:
        """``(offset, length)`` to ask the Model for (length 0: to the end).

        A suffix range needs ``size`` (more bytes than there are: all of
        them). Positions past int64 (no attachment reaches them) are cut to
        the largest: a first byte there is past the end, which the Model
        says with the size; a last byte there is the end. Sent as they
        were, they wrapped to small numbers, and the browser got other
        bytes than it asked for.
        """
        if self.first is None:
            return max(0, (size or 0) - (self.last or 0)), 0
        first = min(self.first, MAX_ID)
        if self.last is None or self.last >= MAX_ID:
            return first, 0
        return first, self.last - first + 1


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def requested_range(header: str) -> ByteRange | None:
    """The single byte range of a ``Range`` header, or None to serve the whole file.

    A header that is not one syntactically valid ``bytes`` range (another
    unit, several ranges, a last byte before the first, ``bytes=-``) is
    ignored, as RFC 9110 lets a server do: the whole file, 200.
    """
    match = _RANGE.match(header.strip())
    if match is None or not (match.group(1) or match.group(2)):
        return None
    if not match.group(1):
        return ByteRange(None, int(match.group(2)))
    first = int(match.group(1))
    last = int(match.group(2)) if match.group(2) else None
    if last is not None and last < first:
        return None
    return ByteRange(first, last)


def range_not_satisfiable(attachment_id: int, header: str, size: int) -> Response[str]:
    """416 with ``Content-Range: bytes */SIZE`` (RFC 9110 15.5.17), saying why in words."""
    return Response(
        f"attachment {attachment_id}: the range {header!r} is past the end of its {size} bytes",
        status_code=416,
        media_type="text/plain",
        headers={
            "content-range": f"bytes */{size}",
            "content-security-policy": DOWNLOAD_CSP,
            "x-content-type-options": "nosniff",
            "cache-control": "private, no-store",
        },
    )


async def _size_for_suffix(
    request: Request[Any, Any, Any], caller: v1.Caller, attachment_id: int
) -> int:
    """The attachment's size, which a suffix range (``bytes=-N``) needs before any byte.

    One ``GetAttachment`` first (an attachment's size never changes).
    """
    attachment = await call(
        frontend_of(request).backends.model.get_attachment,
        v1.GetAttachmentRequest(caller=caller, attachment_id=attachment_id),
    )
    return attachment.size


@get("/attachments/{attachment_text:str}/{name:str}")
async def download_attachment(
    request: Request[Any, Any, Any], attachment_text: FromPath[str], name: FromPath[str]
) -> Response[Any]:
    """The content, streamed from the Model, with the safe-serving headers.

    The first message (the attachment) is read before the response starts,
    so a missing or hidden attachment is a 404 page, never a broken download.
    The rest lasts as long as the browser takes to read it, while it keeps
    reading (:mod:`bugless_web.transfers`). A ``Range`` is answered as RFC
    9110 says: 206 with the bytes and ``Content-Range`` (a last byte past
    the end cut at the end, ``bytes=-N`` the last N), 416 with
    ``Content-Range: bytes */SIZE`` for one starting at or past the end
    (before, the served length came out negative and the header wrong).
    """
    attachment_id = path_id(attachment_text, "attachment_id")
    frontend = frontend_of(request)
    frontend.drain.requests.count_as_transfer()
    download_url = frontend.settings.download_url
    token = request.query_params.get("t")
    if token:
        caller = _caller_of_token(request, token, attachment_id)
    else:
        viewer = await viewer_of(request)
        caller = viewer.caller
        if download_url:
            # A cookieless origin: check access here, hand over a short-lived token.
            await call(
                frontend.backends.model.get_attachment,
                v1.GetAttachmentRequest(caller=caller, attachment_id=attachment_id),
            )
            sealed = frontend.codec.seal_value("download", _token_data(caller, attachment_id))
            return Redirect(
                f"{download_url}/attachments/{attachment_id}/{quote(name, safe='')}?t={sealed}",
                status_code=303,
            )
    header = request.headers.get("range", "")
    wanted = requested_range(header)
    offset, length = 0, 0
    if wanted is not None and wanted.first is None:
        # A suffix longer than the file is all of it; bytes=-0, or any
        # suffix of an empty file, selects nothing.
        size = await _size_for_suffix(request, caller, attachment_id)
        if not wanted.last or not size:
            return range_not_satisfiable(attachment_id, header, size)
        offset, length = wanted.wire(size)
    elif wanted is not None:
        offset, length = wanted.wire()
    try:
        attachment, content = await frontend.backends.download_attachment(
            v1.DownloadAttachmentRequest(
                caller=caller, attachment_id=attachment_id, offset=offset, length=length
            )
        )
    except RangeNotSatisfiable as exc:
        return range_not_satisfiable(attachment_id, header, exc.size)
    size = attachment.size
    if wanted is not None and offset >= size:
        # At the very end the Model sends no bytes: read its empty stream to
        # its end (which ends the call and its count), then say why.
        async for _ in content:
            pass
        return range_not_satisfiable(attachment_id, header, size)
    served = min(length, size - offset) if length else size - offset
    headers = serving_headers(attachment, served)
    status = 200
    if wanted is not None:
        status = 206
        headers["content-range"] = f"bytes {offset}-{offset + served - 1}/{size}"
    return Stream(content, status_code=status, headers=headers)


#: How long a download host link works (it is made for one page view).
DOWNLOAD_TOKEN_SECONDS = 600


def _token_data(caller: v1.Caller, attachment_id: int) -> dict[str, Any]:
    return {
        "a": attachment_id,
        "u": caller.user_id,
        "g": list(caller.groups),
        "x": caller.admin,
        # The viewer's identity assertion: the cookieless request that uses
        # the link has no session to get one from, and the Model believes
        # nothing else. The token is sealed (encrypted), and the link then
        # works as long as the assertion does (minutes).
        "s": CURRENT_ASSERTION.get() or "",
    }


def _caller_of_token(request: Request[Any, Any, Any], token: str, attachment_id: int) -> v1.Caller:
    """Who a download host link was made for; NotFound for a forged, expired or other one."""
    data = frontend_of(request).codec.open_value(
        "download", token, max_age_seconds=DOWNLOAD_TOKEN_SECONDS
    )
    if data is None or data.get("a") != attachment_id:
        raise NotFound(f"attachment {attachment_id}: this download link is invalid or expired")
    CURRENT_ASSERTION.set(str(data.get("s", "")) or None)
    return v1.Caller(
        user_id=str(data.get("u", "")),
        groups=[str(g) for g in data.get("g", [])],
        admin=bool(data.get("x", False)),
    )


@post("/attachments/{attachment_text:str}/delete")
async def delete_attachment(
    request: Request[Any, Any, Any], attachment_text: FromPath[str]
) -> Response[Any]:
    """Detach a file (its uploader or an admin); the timeline records it."""
    attachment_id = path_id(attachment_text, "attachment_id")
    viewer = await viewer_of(request)
    reply = await call(
        frontend_of(request).backends.model.delete_attachment,
        v1.DeleteAttachmentRequest(caller=viewer.caller, attachment_id=attachment_id),
    )
    audit(viewer, "delete attachment", f"attachment {attachment_id}")
    issue_id = reply.issue.id if reply.issue else 0
    # The reply's entry names the file (a Model older than the name gives
    # only its id), so the notice says which one went.
    entry = reply.entry or v1.HistoryEntry()
    gone = entry.deleted_attachment_name or str(attachment_id)
    session_of(request).update(notice=f"Attachment {gone} deleted; the history records it.")
    return redirect(f"/issues/{issue_id}#attachments")


ROUTES = [upload_attachment, download_attachment, delete_attachment]
