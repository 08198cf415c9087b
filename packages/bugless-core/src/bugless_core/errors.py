"""The one error hierarchy of bugless, and its one mapping to gRPC statuses.

Every service raises these (backends translate driver errors with
``raise ... from exc``); the gRPC layer turns them into statuses in
:func:`to_grpc_error`, and clients turn statuses back into the same classes with
:func:`from_grpc_error`, so a bot sees ``IssueVersionConflict`` whether it talks
to the Model directly or through the API frontend. The HTTP mapping for the web
frontend is :attr:`BuglessError.http_status`, also defined here so the two can
never disagree.

Every ``bugless`` command imports this module, ``bugless --help`` included,
so the ``google.rpc.ErrorInfo`` message (and protobuf with it) is imported by
the three functions that build or read one, when first called: a command
that converts no status never loads protobuf. grpclib's ``Status`` and
``GRPCError`` are two small modules and stay at the top, since every class
below names its status. The rules that read answers carrying no bugless
error (a proxy's page, an early release's bare headers) are
``bugless_core._grpc_answers``, which builds this module's classes and so is
imported when first asked.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import ClassVar

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from bugless_core._error_metadata import readable_metadata as _readable_metadata

#: ``google.rpc.ErrorInfo.domain`` of every error bugless attaches details to.
ERROR_DOMAIN = "bugless.dev"


class BuglessError(Exception):
    """Base of every error a bugless service reports to a caller.

    The message is shown to users as is: it names the field or value at fault
    and what would be accepted, and never contains a traceback or SQL.

    Attributes:
        message: Human-readable reason.
        reason: Machine-readable reason (``google.rpc.ErrorInfo.reason``).
        metadata: Machine-readable details (``google.rpc.ErrorInfo.metadata``),
            e.g. the current version of an issue on a version conflict.
    """

    grpc_status: ClassVar[Status] = Status.INTERNAL
    http_status: ClassVar[int] = 500
    default_reason: ClassVar[str] = "INTERNAL"

    def __init__(
        self, message: str, *, reason: str | None = None, metadata: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata: dict[str, str] = dict(metadata or {})


class InvalidArgument(BuglessError):
    """The request is malformed: a field is missing, out of range or unknown."""

    grpc_status = Status.INVALID_ARGUMENT
    http_status = 400
    default_reason = "INVALID_ARGUMENT"


class OutOfRange(InvalidArgument):
    """A value is past the range valid now (gRPC's OUT_OF_RANGE), HTTP 400.

    gRPC's status list and ``google.rpc.Code`` describe it as INVALID_ARGUMENT
    for a value that may become valid as the system changes (reading past the
    end of a file), and map it to HTTP 400; it is bad input, so it is an
    :class:`InvalidArgument` (exit status 2 or 1 as such), and keeps its own
    status so a frontend passing it on does not turn it into another. A
    client receives one without a readable ``size`` as this class
    (:func:`from_grpc_error`): before, such a status had no class and became
    a plain :class:`BuglessError`, an HTTP 500 for what was the caller's value.
    """

    grpc_status = Status.OUT_OF_RANGE
    http_status = 400
    default_reason = "OUT_OF_RANGE"


class RangeNotSatisfiable(OutOfRange):
    """A read starts past the end of content (an attachment's ``size`` bytes).

    gRPC's OUT_OF_RANGE (reading past the end of a file, as its status list
    says) with reason ``RANGE_NOT_SATISFIABLE`` and the content's ``size`` in
    the metadata, and HTTP 416: the web tier answers a ``Range:`` it cannot
    serve with ``Content-Range: bytes */SIZE`` from it, with no second call.
    A subclass of :class:`InvalidArgument`, so code that handles bad input
    handles it too.
    """

    http_status = 416
    default_reason = "RANGE_NOT_SATISFIABLE"

    def __init__(self, message: str, *, size: int) -> None:
        super().__init__(message, metadata={"size": str(size)})
        self.size = size


class NotFound(BuglessError):
    """The thing does not exist, or the caller may not know that it does."""

    grpc_status = Status.NOT_FOUND
    http_status = 404
    default_reason = "NOT_FOUND"


class AlreadyExists(BuglessError):
    """A name or key that must be unique is taken."""

    grpc_status = Status.ALREADY_EXISTS
    http_status = 409
    default_reason = "ALREADY_EXISTS"


class Conflict(BuglessError):
    """The change was made against a state that is no longer current."""

    grpc_status = Status.ABORTED
    http_status = 409
    default_reason = "CONFLICT"


class VersionConflict(Conflict):
    """A write named an ``expected_version`` that is no longer current.

    Every versioned thing (issues, components, custom fields, hotlists,
    saved searches, notification settings) refuses a stale version with
    this reason and the ``current_version`` in the metadata, as model.proto
    promises, so a client can tell "reload and apply again" from any other
    ABORTED.
    """

    default_reason = "VERSION_CONFLICT"

    @classmethod
    def stale(cls, what: str, expected: int, current: int, **metadata: str) -> VersionConflict:
        """The refusal of a write to ``what`` (e.g. "hotlist 7") made at version ``expected``."""
        return cls(
            f"{what} is at version {current}, not {expected}: it changed since you "
            "read it; reload it and apply your change again",
            metadata={
                "expected_version": str(expected),
                "current_version": str(current),
                **metadata,
            },
        )


class IssueVersionConflict(VersionConflict):
    """``expected_version`` is stale; ``current_version`` says what it is now."""

    def __init__(self, issue_id: int, expected_version: int, current_version: int) -> None:
        super().__init__(
            f"issue {issue_id} is at version {current_version}, not {expected_version}: "
            "someone changed it meanwhile; reload it and apply your change again",
            metadata={
                "issue_id": str(issue_id),
                "expected_version": str(expected_version),
                "current_version": str(current_version),
            },
        )
        self.issue_id = issue_id
        self.expected_version = expected_version
        self.current_version = current_version


class FailedPrecondition(BuglessError):
    """The system is not in a state where the call can work (e.g. a cycle)."""

    grpc_status = Status.FAILED_PRECONDITION
    http_status = 409
    default_reason = "FAILED_PRECONDITION"


class ContentGone(FailedPrecondition):
    """The thing is known but its content was removed for good (a deleted attachment).

    gRPC has no "gone": the status is FAILED_PRECONDITION with reason
    ``CONTENT_GONE`` (so a client can tell it from every other precondition),
    and HTTP 410, which tells browsers and caches the link will never work again.
    """

    http_status = 410
    default_reason = "CONTENT_GONE"


class FeedPositionPruned(FailedPrecondition):
    """A change feed position (ReadFeed's or a resumed Watch's) older than the retention.

    The changes after it are gone, so a consumer cannot resume there: it
    re-reads the current state and starts again from the head. The reason
    ``FEED_POSITION_PRUNED`` tells it from every other precondition, and the
    metadata says where the feed now starts and ends.
    """

    default_reason = "FEED_POSITION_PRUNED"

    @property
    def oldest_position(self) -> int:
        """The oldest position still kept (the feed's metadata ``oldest_position``)."""
        return int(self.metadata["oldest_position"])

    @property
    def head_position(self) -> int:
        """The feed's head when the position was refused (metadata ``head_position``)."""
        return int(self.metadata["head_position"])


class MethodNotServed(FailedPrecondition):
    """The server called does not serve the method: it is of a release older than its caller.

    A bugless server answers a method it does not map UNIMPLEMENTED naming it
    (``bugless_core.grpc.unserved_message``); one of a release before that,
    like any grpclib server, answers bare headers, which grpclib's client
    reads as UNKNOWN "Missing content-type header". Either way the caller is
    newer than the server (an upgrade out of docs/upgrades.md's order, which
    upgrades the Model and the Authenticator before the frontends), so
    :func:`from_grpc_error` makes it this: FAILED_PRECONDITION (the call fails
    the same until an operator upgrades the server, so no client retries it,
    as it would UNAVAILABLE), HTTP 501, reason ``METHOD_NOT_SERVED``, a message
    naming the server to upgrade, and the ``service`` and ``method`` in the
    metadata when the answer or the call's route (``from_grpc_error``'s ``route``)
    named them. A frontend passes it on as is.
    """

    http_status = 501
    default_reason = "METHOD_NOT_SERVED"


class Unimplemented(BuglessError):
    """The server serves the method but cannot do what the call asks (gRPC UNIMPLEMENTED).

    HTTP 501. Not an older release (that is :class:`MethodNotServed`): the
    server says why, and a frontend passes its answer on as is.
    """

    grpc_status = Status.UNIMPLEMENTED
    http_status = 501
    default_reason = "UNIMPLEMENTED"


class CapabilityMissing(Unimplemented):
    """The Model's backend lacks the capability the call needs (``watch``, ``change_feed``).

    Reason ``CAPABILITY_MISSING`` with the ``capability`` in the metadata (a
    ``GetServerInfo`` capability name), so a client can tell "this backend
    cannot" from "this server is old"; the message says what to do instead.
    """

    default_reason = "CAPABILITY_MISSING"

    def __init__(self, message: str, *, capability: str) -> None:
        super().__init__(message, metadata={"capability": capability})
        self.capability = capability


class PermissionDenied(BuglessError):
    """The caller is known but may not do this."""

    grpc_status = Status.PERMISSION_DENIED
    http_status = 403
    default_reason = "PERMISSION_DENIED"


class Unauthenticated(BuglessError):
    """The caller's credentials are missing, wrong or expired."""

    grpc_status = Status.UNAUTHENTICATED
    http_status = 401
    default_reason = "UNAUTHENTICATED"


class ResourceExhausted(BuglessError):
    """A rate limit, throttle or quota tripped.

    ``retry_after`` seconds is when the same call may succeed; it is None
    when waiting cannot help (a size limit), and clients must not retry then.
    """

    grpc_status = Status.RESOURCE_EXHAUSTED
    http_status = 429
    default_reason = "RESOURCE_EXHAUSTED"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        details = dict(metadata or {})
        if retry_after is not None:
            # Rounded up to the millisecond: rounded to nearest, 29.0004 s
            # became "29.000", whose whole seconds (Retry-After) came out one
            # under the message's, which rounds the exact wait up.
            details["retry_after"] = f"{math.ceil(retry_after * 1000) / 1000:.3f}"
        super().__init__(message, metadata=details)
        self.retry_after = retry_after


class SizeLimitExceeded(ResourceExhausted):
    """Content is larger than a configured limit (``limit_bytes``); resending it cannot work.

    HTTP 413, and no ``retry_after``: unlike a rate limit, the same request
    fails the same way however long the caller waits.
    """

    http_status = 413
    default_reason = "SIZE_LIMIT_EXCEEDED"

    def __init__(self, message: str, *, limit_bytes: int | None) -> None:
        """``limit_bytes`` is None only for a refusal received without a readable limit."""
        details = {} if limit_bytes is None else {"limit_bytes": str(limit_bytes)}
        super().__init__(message, retry_after=None, metadata=details)
        self.limit_bytes = limit_bytes


class Unavailable(BuglessError):
    """A dependency (database, directory, provider) cannot be reached now.

    With reason :data:`DRAINING_REASON` the server refused the call *before*
    running it because it is shutting down (a rolling restart): any call, even
    one that is not idempotent, is safe to send again, and another instance
    will answer it. With reason :data:`SESSION_RENEWED_REASON` the API refused
    it unrun because the session it was made with ended meanwhile, and the
    connection has a new one: it too is safe to send again, on the same
    connection.
    """

    grpc_status = Status.UNAVAILABLE
    http_status = 503
    default_reason = "UNAVAILABLE"

    @property
    def refused_while_draining(self) -> bool:
        """Whether the call was refused unexecuted by a server shutting down."""
        return self.reason == DRAINING_REASON

    @property
    def refused_with_session_renewed(self) -> bool:
        """Whether the call was refused unexecuted as of its ended session, since renewed."""
        return self.reason == SESSION_RENEWED_REASON


#: ErrorInfo reason of a call refused, unexecuted, by a draining server.
DRAINING_REASON = "DRAINING"
#: ErrorInfo reason of a call the API refused, unexecuted, because the Model
#: refused the session it was made with, which has been renewed since
#: (an upload, or a call refused again after its renewal): make it again.
SESSION_RENEWED_REASON = "SESSION_RENEWED"


class DownloadStalled(BuglessError):
    """A download's reader took nothing of it for too long, or the download too long in all.

    Raised where a download is served, so every server answers it alike
    (DEADLINE_EXCEEDED, HTTP 408, reason ``DOWNLOAD_STALLED``); each message
    says which wait passed. The API raises it at a client's next read once
    that client read nothing for ``--download-idle-seconds`` (its Model call
    was released; it may download again from the offset it reached); the web,
    for a browser that read nothing for ``download_idle_seconds`` or took
    longer than a download may, after the response started, so only the log
    and the metrics see it. A client gets it back as :class:`Unavailable`
    with this reason (:func:`from_grpc_error`): a stall is worth retrying.
    """

    grpc_status = Status.DEADLINE_EXCEEDED
    http_status = 408
    default_reason = "DOWNLOAD_STALLED"


_BY_REASON: dict[str, type[BuglessError]] = {
    cls.default_reason: cls
    for cls in (
        InvalidArgument,
        OutOfRange,
        NotFound,
        AlreadyExists,
        Conflict,
        FailedPrecondition,
        PermissionDenied,
        Unauthenticated,
        ResourceExhausted,
        Unavailable,
        Unimplemented,
    )
}
_BY_STATUS: dict[Status, type[BuglessError]] = {cls.grpc_status: cls for cls in _BY_REASON.values()}


def to_grpc_error(error: BuglessError) -> GRPCError:
    """Turn a bugless error into the GRPCError a grpclib handler raises.

    The reason and metadata travel as a ``google.rpc.ErrorInfo`` detail, which
    grpcurl prints and :func:`from_grpc_error` reads back.
    """
    from google.rpc import error_details_pb2  # noqa: PLC0415 - see the module docstring

    info = error_details_pb2.ErrorInfo(
        reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata
    )
    return GRPCError(error.grpc_status, error.message, [info])


def from_grpc_error(error: GRPCError, *, route: str = "") -> BuglessError:
    """Turn a GRPCError received by a client back into a bugless error.

    ``route`` is the call's (``/bugless.v1.Model/CheckViewers``) when the
    caller knows it (:func:`bugless_core.clients.call_errors` does): a server
    of an early release answers a method it does not serve with bare headers,
    which name neither the server nor the method, and the
    :class:`MethodNotServed` made of them names both from the route.

    Statuses without a bugless class (INTERNAL, UNKNOWN, DEADLINE_EXCEEDED, ...)
    become :class:`Unavailable` when transient and :class:`BuglessError`
    otherwise, keeping the server's message. A number in the metadata that does
    not read as one is dropped (``_error_metadata.readable_metadata``): an issue version
    conflict without a readable issue id or version is a :class:`VersionConflict`,
    a pruned feed position without readable positions a plain
    :class:`FailedPrecondition`, a size limit without one a
    :class:`SizeLimitExceeded` whose ``limit_bytes`` is None, an OUT_OF_RANGE
    without a readable ``size`` an :class:`OutOfRange` (HTTP 400), and a rate
    limit with an unreadable ``retry_after`` waits the default second. Never
    raises.
    """
    from google.rpc import error_details_pb2  # noqa: PLC0415 - see the module docstring

    message = error.message or error.status.name
    info = next(
        (
            d
            for d in (error.details or [])
            if isinstance(d, error_details_pb2.ErrorInfo) and d.domain == ERROR_DOMAIN
        ),
        None,
    )
    metadata = _readable_metadata(info.metadata) if info is not None else {}
    reason = info.reason if info is not None else None
    if (
        reason == IssueVersionConflict.default_reason
        and {
            "issue_id",
            "expected_version",
            "current_version",
        }
        <= metadata.keys()
    ):
        return IssueVersionConflict(
            int(metadata["issue_id"]),
            int(metadata["expected_version"]),
            int(metadata["current_version"]),
        )
    if reason == VersionConflict.default_reason and error.status is Status.ABORTED:
        return VersionConflict(message, metadata=metadata)
    if reason == SizeLimitExceeded.default_reason:
        # Without a readable limit it is still a size limit: waiting cannot help.
        limit = metadata.get("limit_bytes")
        return SizeLimitExceeded(message, limit_bytes=None if limit is None else int(limit))
    if reason == ContentGone.default_reason and error.status is Status.FAILED_PRECONDITION:
        return ContentGone(message, metadata=metadata)
    if (
        reason == FeedPositionPruned.default_reason
        and error.status is Status.FAILED_PRECONDITION
        and {"oldest_position", "head_position"} <= metadata.keys()
    ):
        return FeedPositionPruned(message, metadata=metadata)
    if error.status is Status.OUT_OF_RANGE and "size" in metadata:
        return RangeNotSatisfiable(message, size=int(metadata["size"]))
    if error.status is Status.RESOURCE_EXHAUSTED:
        return ResourceExhausted(message, retry_after=float(metadata.get("retry_after", "1")))
    if error.status is Status.DEADLINE_EXCEEDED:
        return Unavailable(message, reason=reason, metadata=metadata)
    if error.status is Status.UNIMPLEMENTED and reason == CapabilityMissing.default_reason:
        return CapabilityMissing(message, capability=metadata.get("capability", ""))
    if error.status is Status.FAILED_PRECONDITION and reason == MethodNotServed.default_reason:
        return MethodNotServed(message, metadata=metadata)  # passed on by a frontend
    from bugless_core import _grpc_answers  # noqa: PLC0415 - it imports this module

    not_grpc = _grpc_answers.not_grpc_answer(error, route)
    if not_grpc is not None:
        return not_grpc
    not_served = _grpc_answers.method_not_served_answer(error, route)
    if not_served is not None:
        return not_served
    cls = _BY_STATUS.get(error.status, BuglessError)
    return cls(message, reason=reason, metadata=metadata)


def method_not_served(error: GRPCError) -> bool:
    """Whether ``error`` says the server does not serve the method called (an older release).

    The one rule (:class:`MethodNotServed`), for a caller that treats an
    older server's missing method as "not there yet" rather than a failure.
    """
    from bugless_core import _grpc_answers  # noqa: PLC0415 - it imports this module

    return _grpc_answers.method_not_served_answer(error) is not None


def from_status(
    code: int, message: str, reason: str = "", metadata: Mapping[str, str] | None = None
) -> BuglessError:
    """The bugless error a status carried as data stands for (a batch item's result).

    The same error :func:`from_grpc_error` makes of a call that failed with
    that status and ErrorInfo, so an item of a batch fails as its own call
    would have.
    """
    from google.rpc import error_details_pb2  # noqa: PLC0415 - see the module docstring

    details = []
    if reason:
        details.append(
            error_details_pb2.ErrorInfo(
                reason=reason, domain=ERROR_DOMAIN, metadata=dict(metadata or {})
            )
        )
    return from_grpc_error(GRPCError(Status(code), message, details))
