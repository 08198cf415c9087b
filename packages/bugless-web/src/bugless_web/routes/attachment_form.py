"""Attaching a file without script: a plain ``multipart/form-data`` POST, streamed.

The issue page's attachment list carries a small form (a file input and a
button) that works in a browser with JavaScript off. Its body is parsed as
it arrives (:mod:`bugless_web.streamed_forms`), and the file's bytes go to
the Model in chunks of at most :data:`~bugless_core.attachments.CHUNK_BYTES`
while the browser is still sending, exactly like the script's raw upload.

**CSRF as every form.** The token is the form's first field (``_csrf``),
so it is read, and checked, before a byte of the file is: the generic
check (which would parse the whole body) leaves this route to do it
(:data:`~bugless_web.frontend.CSRF_IN_STREAM`).

**Limits.** The Model refuses a file over the per-file or per-issue limit
as soon as it has seen too many bytes; the page then answers 413 naming the
limit. The rest of the body is read and dropped first (up to
:data:`~bugless_web.streamed_forms.DRAIN_BYTES`), so the browser shows the
answer rather than a reset connection. An upload has no fixed deadline but must keep moving
(:mod:`bugless_web.transfers`): a browser that stops sending gets a 408 page,
its body no longer read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from litestar import Request, Response, post
from litestar.params import FromPath

from bugless_core.errors import InvalidArgument
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
from bugless_web.streamed_forms import drain, fields_until_file, file_chunks, form_events
from bugless_web.transfers import UploadStalled

#: The form's file input.
FILE_FIELD = "file"


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
    events = form_events(request)
    try:
        pairs, part = await fields_until_file(events, FILE_FIELD)
        fields = dict(pairs)
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
            async for chunk in file_chunks(events):
                yield v1.UploadAttachmentRequest(chunk=chunk)

        reply = await frontend_of(request).backends.upload_attachment(messages())
    except (UploadStalled, asyncio.CancelledError):
        # The browser stopped sending: waiting for the rest would wait forever;
        # or the request was cancelled (the server's drain cut it): it ends now.
        await events.aclose()
        raise
    except BaseException:
        await drain(events)
        raise
    await drain(events)
    attachment = reply.attachment or v1.Attachment()
    audit(viewer, "attach", f"issue {issue_id}", attachment_id=attachment.id)
    session_of(request).update(notice=f"Attached {attachment.name}.")
    return redirect(f"/issues/{issue_id}#attachments")


ROUTES = [attach_by_form]
