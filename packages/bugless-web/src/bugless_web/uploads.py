"""An upload to the Model: a deadline that fits a transfer, its retry, its count.

Every other backend call of the web has ``call_timeout_seconds`` (10 s): a
page never waits longer for a backend that stopped answering. An upload
cannot have that deadline: it lasts as long as the browser takes to send the
file, and 100 MiB over a slow link takes minutes while every byte is moving.
So an upload (the page's script, :mod:`bugless_web.routes.attachments`, and
the no-script form, :mod:`bugless_web.routes.attachment_form`) is bounded by
how it moves instead:

* it fails once no bytes have moved for ``upload_idle_seconds``: nothing came
  from the browser (:class:`UploadStalled`, a 408 naming the wait), or the
  Model took nothing of what came (:class:`~bugless_core.errors.Unavailable`,
  a 503);
* it may take ``upload_timeout_seconds`` in all, moving or not, so a browser
  trickling a byte at a time cannot hold a request and a Model call forever;
* once the last byte has gone out, the Model's answer has
  ``call_timeout_seconds``, like any call.

The call is then cancelled, which resets its stream: the Model keeps nothing
of an upload that did not finish. The gRPC deadline the Model is sent is the
whole allowance (total and answer), a bound it enforces too should this
replica stop watching.

An upload refused by a draining Model is sent once more
(:func:`bugless_core.failover.upload_again_if_refused`), and it is counted in
the web's metrics as every unary call is (:func:`bugless_web.retries.counted_call`):
by final code (``DEADLINE_EXCEEDED`` for the limits above), with its retry.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, ClassVar

from grpclib.const import Status

from bugless_core.clients import call_errors
from bugless_core.errors import BuglessError, Unavailable
from bugless_core.failover import MODEL_UPLOAD_ROUTE, upload_again_if_refused
from bugless_proto import v1
from bugless_web.retries import counted_call

if TYPE_CHECKING:
    from bugless_web.metrics import WebMetrics
    from bugless_web.settings import WebSettings


class UploadStalled(BuglessError):
    """The browser sent no byte of an upload for too long, or took too long in all.

    A 408 (Request Timeout), as a proxy answers a client that stopped
    sending; the message says how long it waited. Nothing was attached.
    """

    grpc_status: ClassVar[Status] = Status.DEADLINE_EXCEEDED
    http_status: ClassVar[int] = 408
    default_reason: ClassVar[str] = "UPLOAD_STALLED"


class _Progress:
    """Where an upload is: whom it waits for, and when it must next move by.

    Moves the deadline of the ``asyncio.Timeout`` around the call each time a
    message comes from the browser (it has moved), and, once the browser has
    sent the last one, to the answer's deadline.
    """

    def __init__(self, settings: WebSettings, timer: asyncio.Timeout) -> None:
        self._settings = settings
        self._timer = timer
        self._loop = asyncio.get_running_loop()
        #: The most the upload may take in all (loop time).
        self.ends = self._loop.time() + settings.upload_timeout_seconds
        #: Whether the call waits for the browser (else for the Model).
        self.waiting_for_browser = True
        self.sent_all = False
        self._moved()

    def _moved(self) -> None:
        idle_ends = self._loop.time() + self._settings.upload_idle_seconds
        self._timer.reschedule(min(self.ends, idle_ends))

    async def watched(
        self, messages: AsyncIterator[v1.UploadAttachmentRequest]
    ) -> AsyncIterator[v1.UploadAttachmentRequest]:
        """``messages``, each taken from the browser counting as progress.

        The call takes the next message only once the Model has taken the
        one before it (flow control), so a Model that stops reading stops
        the taking too, and the wait is then the Model's.
        """
        source = aiter(messages)
        while True:
            self.waiting_for_browser = True
            try:
                message = await anext(source)
            except StopAsyncIteration:
                break
            self.waiting_for_browser = False
            self._moved()
            yield message
        self.waiting_for_browser = False
        self.sent_all = True
        self._timer.reschedule(self._loop.time() + self._settings.call_timeout_seconds)

    def timed_out(self) -> BuglessError:
        """The error of an upload whose deadline passed, saying which one."""
        settings = self._settings
        if self.sent_all:
            return Unavailable(
                "the model service did not answer within "
                f"{settings.call_timeout_seconds:g} s of the upload's end; nothing was attached"
            )
        if self._loop.time() >= self.ends:
            return UploadStalled(
                f"the upload took longer than {settings.upload_timeout_seconds:g} s, the most "
                "one may take here; nothing was attached"
            )
        if self.waiting_for_browser:
            return UploadStalled(
                f"the upload stalled: nothing arrived for {settings.upload_idle_seconds:g} s; "
                "nothing was attached, try again"
            )
        return Unavailable(
            f"the model service took nothing of the upload for "
            f"{settings.upload_idle_seconds:g} s; nothing was attached"
        )


async def upload_to_model(
    stub: v1.ModelStub,
    messages: AsyncIterator[v1.UploadAttachmentRequest],
    settings: WebSettings,
    metrics: WebMetrics | None,
) -> v1.UploadAttachmentResponse:
    """Send an upload's ``messages`` (the header first) to the Model, bounded as the module says.

    ``stub`` should carry no deadline of its own shorter than the allowance
    (:attr:`bugless_web.backends.Backends.model_uploads`).

    Raises:
        UploadStalled: The browser sent nothing for ``upload_idle_seconds``,
            or the upload passed ``upload_timeout_seconds``.
        Unavailable: The Model took nothing for ``upload_idle_seconds``, did
            not answer in ``call_timeout_seconds`` after the end, or could
            not be reached.
        BuglessError: The Model's refusal (too large, not found ...).
    """
    counted = (
        counted_call(metrics, MODEL_UPLOAD_ROUTE)
        if metrics is not None
        else contextlib.nullcontext()
    )
    on_retry = metrics.retried if metrics is not None else None
    with call_errors("the model service is unreachable"):
        try:
            with counted:
                async with asyncio.timeout(None) as timer:
                    progress = _Progress(settings, timer)
                    return await upload_again_if_refused(
                        stub,
                        progress.watched(messages),
                        v1.UploadAttachmentResponse,
                        on_retry=on_retry,
                    )
        except TimeoutError as exc:
            if not timer.expired():
                raise  # the gRPC deadline (the Model's bound): unreachable, as any call
            raise progress.timed_out() from exc
