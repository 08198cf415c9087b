"""A transfer with the Model (an upload, a download): a deadline that fits it, its retry, its count.

Every other backend call of the web has ``call_timeout_seconds`` (10 s): a
page never waits longer for a backend that stopped answering. A transfer
cannot have that deadline: it lasts as long as the browser takes to send or
read the file, and 100 MiB over a slow link takes minutes while every byte
is moving. So a transfer is bounded by how it moves instead, one
:class:`TransferClock` for both directions:

* it fails once no bytes have moved for its idle limit
  (``upload_idle_seconds``, ``download_idle_seconds``): the browser sent or
  read nothing, or the Model took or sent nothing;
* it may take its total limit (``upload_timeout_seconds``,
  ``download_timeout_seconds``) in all, moving or not, so a browser
  trickling a byte at a time cannot hold a request and a Model call forever.

**Uploads** (the page's script, :mod:`bugless_web.routes.attachments`, and
the no-script form, :mod:`bugless_web.routes.attachment_form`): a browser
that stopped sending gets :class:`UploadStalled` (a 408 naming the wait), a
Model that took nothing an :class:`~bugless_core.errors.Unavailable` (503).
Once the last byte has gone out, the Model's answer has
``call_timeout_seconds``, like any call. The call is then cancelled, which
resets its stream: the Model keeps nothing of an upload that did not finish.
An upload refused by a draining Model is sent once more
(:func:`bugless_core.failover.upload_again_if_refused`), and it is counted in
the web's metrics as every unary call is (:func:`bugless_web.retries.counted_call`):
by final code (``DEADLINE_EXCEEDED`` for the limits above), with its retry.

**Downloads** (:func:`download_from_model`): the first message (the
attachment) is a call's answer (``call_timeout_seconds``), read before the
response starts; until it has come, the call is retried once as a read is
(:func:`bugless_web.retries.send_with_retry`: a draining Model's refusal on
a new connection, an UNAVAILABLE or a dropped connection after a pause),
since nothing has gone to the browser. Once the response has started,
nothing is retried: the body can only end short. After the first message,
a browser that stops reading releases the Model call once the idle limit
has passed, and the body then ends broken (its
content-length unmet), as does one whose Model sent nothing that long, or
whose Model stream broke. Nobody but the log can be told then: a stalled
browser is one warning line (which attachment, how long it waited), a
Model that failed one error line (its status), and the body ends with
:class:`ResponseCut`, which the server does not report again. A browser
that went away (a closed tab, a cancelled save) is one info line (how many
bytes of how many it had been sent), the Model call ended with it. A
download is counted in the metrics as an upload is, by final code: the count
ends when its call does (with the body, or when a stalled browser's call is
released: ``DEADLINE_EXCEEDED``; ``CANCELLED`` for a browser that went away).

The gRPC deadline the Model is sent is a transfer's whole allowance, a bound
it enforces too should this replica stop watching.

**A connection of their own**
(:meth:`bugless_core.service_address.ServiceAddress.transfer_channel`): a
download reads the Model's stream only as fast as the browser reads, and
HTTP/2 gives the Model more credit only for what was read. Over the one
connection the pages use, whose window was no larger than a stream's (4 MiB),
one browser that stopped reading a larger file held every other call of this
replica (everyone's pages) until its idle limit released it. Transfers
therefore go over a connection of their own, whose window holds eight
streams' windows: pages share nothing with a stream read at a browser's
pace, a stalled download holds up no other (up to eight at once), and what
the Model may send this replica unread stays bounded (32 MiB).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, ClassVar

from grpclib.const import Status

from bugless_core.clients import call_errors
from bugless_core.errors import BuglessError, DownloadStalled, InvalidArgument, Unavailable
from bugless_core.failover import (
    MODEL_DOWNLOAD_ROUTE,
    MODEL_UPLOAD_ROUTE,
    upload_again_if_refused,
)
from bugless_proto import v1
from bugless_web.drain import cut_by_drain
from bugless_web.retries import (
    call_code,
    counted_call,
    outage_fed,
    refuse_out_of_range,
    send_with_retry,
)

if TYPE_CHECKING:
    from bugless_core.outage import OutageLog
    from bugless_web.metrics import WebMetrics
    from bugless_web.settings import WebSettings


_log = logging.getLogger("bugless.web")


class UploadStalled(BuglessError):
    """The browser sent no byte of an upload for too long, or took too long in all.

    A 408 (Request Timeout), as a proxy answers a client that stopped
    sending; the message says how long it waited. Nothing was attached.
    """

    grpc_status: ClassVar[Status] = Status.DEADLINE_EXCEEDED
    http_status: ClassVar[int] = 408
    default_reason: ClassVar[str] = "UPLOAD_STALLED"


class ResponseCut(Exception):
    """A response body cut short after it started, for a reason already logged.

    Raising from the body is how an ASGI app has the server close the
    connection, so the browser sees its download unfinished (content-length
    unmet) rather than a file that looks whole. Not a :class:`BuglessError`:
    nobody is shown it. The server would log it as an uncaught exception,
    with a traceback, for what is an ordinary event (a browser that stopped
    reading), so its log skips what :func:`only_cuts` recognises
    (:func:`bugless_web.app.create_app`).
    """


def only_cuts(error: BaseException) -> bool:
    """Whether ``error`` is a :class:`ResponseCut`, or wraps nothing else.

    The server sees the cut wrapped: in the exception group of the task
    that sent the body, and raised *from* that by Litestar ("Exception
    caught after response started"). A group holding anything besides cuts
    is not one: a real failure keeps its traceback.
    """
    if isinstance(error, ResponseCut):
        return True
    if isinstance(error, BaseExceptionGroup):
        return all(only_cuts(member) for member in error.exceptions)
    return error.__cause__ is not None and only_cuts(error.__cause__)


class TransferClock:
    """When a transfer must next move by, and whom it waits for.

    Each move (a message taken from, or given to, the browser) pushes the
    deadline to the idle limit from now, never past the total limit; once
    the browser's part is done (an upload's last byte sent), the deadline is
    the answer's. ``on_deadline`` is told each new deadline (loop time), so
    the caller can move whatever enforces it.
    """

    def __init__(
        self,
        idle_seconds: float,
        total_seconds: float,
        on_deadline: Callable[[float], None] | None = None,
    ) -> None:
        self.idle_seconds = idle_seconds
        self.total_seconds = total_seconds
        self._on_deadline = on_deadline
        self._loop = asyncio.get_running_loop()
        #: The most the transfer may take in all (loop time).
        self.ends = self._loop.time() + total_seconds
        #: The current deadline (loop time).
        self.deadline = self.ends
        #: Whether the transfer waits for the browser (else for the Model).
        self.waiting_for_browser = True
        #: Whether only the Model's answer is left.
        self.answering = False
        self.moved()

    def _set(self, deadline: float) -> None:
        self.deadline = deadline
        if self._on_deadline is not None:
            self._on_deadline(deadline)

    def moved(self) -> None:
        """Bytes moved: the transfer may now wait up to the idle limit again."""
        self._set(min(self.ends, self._loop.time() + self.idle_seconds))

    def answer_within(self, seconds: float) -> None:
        """The browser's part is done: the Model must answer within ``seconds``."""
        self.waiting_for_browser = False
        self.answering = True
        self._set(self._loop.time() + seconds)

    def out_of_time(self) -> bool:
        """Whether the total limit (not the idle one) is what passed."""
        return self._loop.time() >= self.ends


class _UploadProgress:
    """An upload's clock, moved by each message the browser sends."""

    def __init__(self, settings: WebSettings, timer: asyncio.Timeout) -> None:
        self._settings = settings
        self.clock = TransferClock(
            settings.upload_idle_seconds, settings.upload_timeout_seconds, timer.reschedule
        )

    async def watched(
        self, messages: AsyncIterator[v1.UploadAttachmentRequest]
    ) -> AsyncIterator[v1.UploadAttachmentRequest]:
        """``messages``, each taken from the browser counting as progress.

        The call takes the next message only once the Model has taken the
        one before it (flow control), so a Model that stops reading stops
        the taking too, and the wait is then the Model's.
        """
        clock = self.clock
        source = aiter(messages)
        while True:
            clock.waiting_for_browser = True
            try:
                message = await anext(source)
            except StopAsyncIteration:
                break
            clock.waiting_for_browser = False
            clock.moved()
            yield message
        clock.answer_within(self._settings.call_timeout_seconds)

    def timed_out(self) -> BuglessError:
        """The error of an upload whose deadline passed, saying which one."""
        clock, settings = self.clock, self._settings
        if clock.answering:
            return Unavailable(
                "the model service did not answer within "
                f"{settings.call_timeout_seconds:g} s of the upload's end; nothing was attached"
            )
        if clock.out_of_time():
            return UploadStalled(
                f"the upload took longer than {clock.total_seconds:g} s, the most "
                "one may take here; nothing was attached"
            )
        if clock.waiting_for_browser:
            return UploadStalled(
                f"the upload stalled: nothing arrived for {clock.idle_seconds:g} s; "
                "nothing was attached, try again"
            )
        return Unavailable(
            f"the model service took nothing of the upload for "
            f"{clock.idle_seconds:g} s; nothing was attached"
        )


async def upload_to_model(
    stub: v1.ModelStub,
    messages: AsyncIterator[v1.UploadAttachmentRequest],
    settings: WebSettings,
    metrics: WebMetrics | None,
    *,
    outage: OutageLog | None = None,
) -> v1.UploadAttachmentResponse:
    """Send an upload's ``messages`` (the header first) to the Model, bounded as the module says.

    ``stub`` should carry no deadline of its own shorter than the allowance
    (:attr:`bugless_web.backends.Backends.model_uploads`). A Model that
    cannot be reached is a failed call of ``outage``, an answer ends it
    (:func:`~bugless_web.retries.outage_fed`).

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
            with counted, outage_fed(outage, MODEL_UPLOAD_ROUTE):
                async with asyncio.timeout(None) as timer:
                    progress = _UploadProgress(settings, timer)
                    return await upload_again_if_refused(
                        stub,
                        progress.watched(messages),
                        v1.UploadAttachmentResponse,
                        on_retry=on_retry,
                    )
        except TimeoutError as exc:
            if not timer.expired():
                raise  # the gRPC deadline (the Model's bound): call_errors says no answer in time
            raise progress.timed_out() from exc


class _CallCount:
    """A download's count in ``metrics`` (if any), ended once, by the first end to come.

    A download's call outlives any block (:func:`~bugless_web.retries.counted_call`
    is one): it ends with the body, or earlier when a stalled browser's call
    is released.
    """

    def __init__(self, metrics: WebMetrics | None) -> None:
        self._metrics = metrics
        self._started = time.perf_counter()

    def end(self, error: BaseException | None) -> None:
        """The call ended with ``error`` (``None``: it finished); later ends change nothing."""
        metrics, self._metrics = self._metrics, None
        if metrics is not None:
            seconds = time.perf_counter() - self._started
            metrics.call_finished(MODEL_DOWNLOAD_ROUTE, call_code(error), seconds)


async def download_from_model(
    stub: v1.ModelStub,
    request: v1.DownloadAttachmentRequest,
    settings: WebSettings,
    metrics: WebMetrics | None = None,
    *,
    outage: OutageLog | None = None,
) -> tuple[v1.Attachment, AsyncIterator[bytes]]:
    """Start a download: the attachment (its first message) and the content to stream.

    ``stub`` should carry no deadline of its own shorter than the allowance
    (:attr:`bugless_web.backends.Backends.model_downloads`). The content is
    bounded as the module says: once the browser read nothing for
    ``download_idle_seconds`` or the download passed
    ``download_timeout_seconds``, the Model call is released (even while
    the browser still holds the connection) and a warning logged; once the
    Model sent nothing that long, or its stream failed, an error is logged.
    Either way the content then raises :class:`ResponseCut`. Closing it (or
    cancelling its reader: the browser went away) ends the Model call, and
    is logged at info. The call is counted in ``metrics`` until it ends (see
    the module). Its start (after the retry) and each wait for the Model
    feed ``outage``: unreachable is a failed call, an answer ends it.

    Raises:
        Unavailable: The Model did not send the attachment within
            ``call_timeout_seconds``, or could not be reached (twice).
        BuglessError: The Model's refusal (not found ...).
        InvalidArgument: An integer of ``request`` its field cannot hold
            (:func:`~bugless_web.retries.refuse_out_of_range`): nothing sent.
    """
    refuse_out_of_range(request)
    count = _CallCount(metrics)

    async def start(
        route: str, request: v1.DownloadAttachmentRequest
    ) -> tuple[v1.DownloadAttachmentResponse | None, AsyncIterator[v1.DownloadAttachmentResponse]]:
        parts = stub.download_attachment(request)
        try:
            async with asyncio.timeout(settings.call_timeout_seconds):
                return await anext(parts, None), parts
        except BaseException:
            await _closed(parts)
            raise

    try:
        with call_errors("the model service is unreachable"):
            try:
                # Nothing has gone to the browser yet: a refusal (a draining
                # Model) or a dropped connection is retried as a read is.
                with outage_fed(outage, MODEL_DOWNLOAD_ROUTE):
                    first, parts = await send_with_retry(
                        stub.channel,
                        start,
                        MODEL_DOWNLOAD_ROUTE,
                        request,
                        on_retry=metrics.retried if metrics is not None else None,
                    )
            except TimeoutError as exc:
                msg = (
                    "the model service did not start the download within "
                    f"{settings.call_timeout_seconds:g} s"
                )
                raise Unavailable(msg) from exc
        if first is None or first.attachment is None:
            await _closed(parts)
            msg = f"attachment {request.attachment_id}: the download had no metadata"
            raise InvalidArgument(msg)
    except BaseException as exc:
        count.end(exc)
        raise
    attachment = first.attachment
    left = max(0, attachment.size - request.offset)
    length = min(request.length, left) if request.length else left
    return attachment, _content(
        parts,
        settings,
        count,
        request.attachment_id,
        length,
        outage=outage,
        # The body is sent by a task of the response's, not this one (the
        # request's, which a drain cuts): see cut_by_drain.
        request_task=asyncio.current_task(),
    )


async def _content(
    parts: AsyncIterator[v1.DownloadAttachmentResponse],
    settings: WebSettings,
    count: _CallCount,
    attachment_id: int,
    length: int,
    *,
    outage: OutageLog | None,
    request_task: asyncio.Task[Any] | None,
) -> AsyncIterator[bytes]:
    """The chunks of ``parts``, each wait (for the Model, for the browser) on one clock.

    The wait for the Model is in this frame (a timeout around it); the wait
    for the browser is the ``yield``, outside it, so a timer releases the
    Model call (closes ``parts``, not running then) if the browser does not
    take the chunk in time, and the body ends when it next resumes.
    """
    loop = asyncio.get_running_loop()
    clock = TransferClock(settings.download_idle_seconds, settings.download_timeout_seconds)
    released: asyncio.Task[None] | None = None
    timer: asyncio.TimerHandle | None = None
    sent = 0

    def release() -> None:
        nonlocal released
        released = loop.create_task(_closed(parts))
        stalled = _download_timed_out(clock)
        count.end(stalled)
        # Logged now, when it happens: the browser may never come back.
        _log.warning(
            "attachment %s: %s; its model call is released, the download ends short after %d bytes",
            attachment_id,
            stalled,
            sent,
            extra={"attachment_id": attachment_id, "sent_bytes": sent},
        )

    try:
        with call_errors("the model service stream broke"):
            while True:
                clock.waiting_for_browser = False
                try:
                    async with asyncio.timeout_at(clock.deadline):
                        with outage_fed(outage, MODEL_DOWNLOAD_ROUTE):
                            part = await anext(parts, None)
                except TimeoutError as exc:
                    raise _download_timed_out(clock) from exc
                if part is None:
                    break
                if not part.chunk:
                    continue
                clock.waiting_for_browser = True
                timer = loop.call_at(clock.deadline, release)
                yield part.chunk
                timer.cancel()
                if released is not None:
                    raise ResponseCut(f"attachment {attachment_id}: the browser stalled")
                sent += len(part.chunk)
                clock.moved()
    except BuglessError as exc:
        # The Model's side (a status mid-body, or nothing sent for the idle limit).
        count.end(exc)
        _log.error(
            "attachment %s: the download broke after %d bytes: %s: %s",
            attachment_id,
            sent,
            exc.grpc_status.name,
            exc,
            extra={"attachment_id": attachment_id, "sent_bytes": sent},
        )
        raise ResponseCut(f"attachment {attachment_id}: {exc}") from exc
    except (asyncio.CancelledError, GeneratorExit) as exc:
        # The browser went away: the server cancels the body's task when
        # the connection closes (or closes the body at its yield). Ordinary
        # (a closed tab, a cancelled save), so one line, not a warning;
        # none after a stall, which was logged when its call was released,
        # nor after the drain cut the download, which the drain counts.
        count.end(exc)
        if released is None and not cut_by_drain(request_task):
            _log.info(
                "attachment %s: the browser went away after %d of %d bytes; "
                "the download ends there",
                attachment_id,
                sent,
                length,
                extra={"attachment_id": attachment_id, "sent_bytes": sent},
            )
        raise
    except BaseException as exc:
        count.end(exc)
        raise
    else:
        count.end(None)
    finally:
        # Closed at the yield (the browser went away): no release to come.
        if timer is not None:
            timer.cancel()
        if released is not None:
            await released
        await _closed(parts)


def _download_timed_out(clock: TransferClock) -> BuglessError:
    """The error of a download whose deadline passed, saying which one."""
    if clock.out_of_time():
        return DownloadStalled(
            f"the download took longer than {clock.total_seconds:g} s, the most one may take here"
        )
    if clock.waiting_for_browser:
        return DownloadStalled(
            f"the download stalled: the browser read nothing for {clock.idle_seconds:g} s"
        )
    return Unavailable(
        f"the model service sent nothing of the download for {clock.idle_seconds:g} s"
    )


async def _closed(parts: AsyncIterator[v1.DownloadAttachmentResponse]) -> None:
    """End the Model call behind ``parts`` (its stream is reset if unfinished)."""
    aclose = getattr(parts, "aclose", None)
    if aclose is not None:
        await aclose()
