"""h2's "Received frame" trace line without rendering the frame when the line goes nowhere.

h2 (4.x) starts ``H2Connection._receive_frame``, which every received frame
passes through, with ``self.config.logger.trace("Received frame: %s",
repr(frame))``. The ``repr`` is built before the logger is asked, and every
bugless connection (grpclib's, with no logger configured) has h2's
``DummyLogger``, whose ``trace`` does nothing: each received HEADERS, DATA,
WINDOW_UPDATE or PING frame is rendered (2-5 µs; a GetIssue through the API
receives 3-4) and thrown away, on every gRPC hop.

:func:`install` wraps hyperframe's ``Frame.__repr__``: called by exactly that
line of ``_receive_frame`` on a connection whose logger is a ``DummyLogger``,
it returns :data:`NOT_RENDERED` instead of the frame's text; called from
anywhere else (a debugger, an exception message, a connection with a real
logger) it renders what hyperframe renders. Finding the connection's logger
from the ``repr`` call means reading h2's frame's locals (``f_locals``, a
dict built on each read, ~0.7 µs a frame); a receiver that already knows its
connection's logger is a ``DummyLogger`` says so instead, for as long as it
feeds that connection (:func:`receiving_quietly`, :data:`RECEIVING`, as every
corked connection does), and the frames it receives are not rendered without that read.

It installs only after checking that the installed h2 still calls ``repr``
in ``_receive_frame`` once, in that line and nowhere else, and that
``DummyLogger.trace`` is still a no-op; an h2 that changed either keeps the
rendering (slower, still correct).

**A graceful GOAWAY ends only the streams it names.** A GOAWAY with
``NO_ERROR`` and a ``last_stream_id`` says: streams up to that id will be
answered, the ones above it were not processed (and may be sent again
elsewhere), open no more. h2 4.x instead moves the whole connection to its
CLOSED state on any GOAWAY received, after which every frame of the streams
still being answered is a protocol error: an in-flight call could not finish.
:func:`keep_streams_on_graceful_goaway` replaces, on one connection, the
handler h2 looks the GOAWAY frame up in (the instance's
``H2Connection._frame_dispatch_table``): a graceful GOAWAY yields the same
``ConnectionTerminated`` event and leaves the state and the outbound buffer
alone; any other GOAWAY goes to h2's own handler. Whoever installs it must
then open no stream on the connection (see
:class:`bugless_core._compat.grpclib.GracefulGoawayProcessor`).
"""

from __future__ import annotations

import dis
import inspect
import sys
import threading
from collections.abc import Callable
from typing import Any

from h2.config import DummyLogger
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import ConnectionTerminated, Event
from hyperframe.frame import Frame, GoAwayFrame

__all__ = [
    "NOT_RENDERED",
    "RECEIVING",
    "H2SurfaceChanged",
    "Receiving",
    "install",
    "installed",
    "keep_streams_on_graceful_goaway",
    "receiving_quietly",
    "renders_only_for_trace",
    "trace_is_a_no_op",
]

#: What ``repr(frame)`` gives the trace line that goes nowhere.
NOT_RENDERED = "<frame not rendered: h2's trace logger is off>"

#: The one statement of ``_receive_frame`` that renders the frame.
TRACE_LINE = 'self.config.logger.trace("Received frame: %s", repr(frame))'

#: Instructions a function that does nothing compiles to (CPython 3.11-3.13).
_NO_OP_OPCODES = frozenset({"RESUME", "NOP", "LOAD_CONST", "RETURN_VALUE", "RETURN_CONST"})


def renders_only_for_trace(function: Callable[..., Any]) -> bool:
    """Whether ``function`` calls ``repr`` once, in :data:`TRACE_LINE`, and nowhere else."""
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        return False
    lines = [line.strip() for line in source.splitlines()]
    return source.count("repr(") == 1 and lines.count(TRACE_LINE) == 1


def trace_is_a_no_op(function: Callable[..., Any]) -> bool:
    """Whether ``function`` only returns None (a docstring at most)."""
    code = getattr(function, "__code__", None)
    if code is None:
        return False
    for instruction in dis.get_instructions(code):
        if instruction.opname not in _NO_OP_OPCODES:
            return False
        if instruction.opname in {"LOAD_CONST", "RETURN_CONST"} and instruction.argval is not None:
            return False
    return True


_receive_frame: Any = getattr(H2Connection, "_receive_frame", None)
_RECEIVE_FRAME = getattr(_receive_frame, "__code__", None)
_original: Callable[[Frame], str] = Frame.__repr__
_no_op_trace: Any = DummyLogger.trace


class Receiving(threading.local):
    """What this thread is receiving: see :data:`RECEIVING`."""

    #: Set while this thread feeds a connection whose logger is a DummyLogger.
    quiet = False


#: Set ``RECEIVING.quiet`` to True around a connection's ``receive_data``
#: when :func:`receiving_quietly` allows it (h2 receives nothing for another
#: connection inside it), and back to what it was after; per thread.
RECEIVING = Receiving()


def receiving_quietly(connection: H2Connection) -> bool:
    """Whether the frames ``connection`` receives may skip rendering without a look at h2's frame.

    True when the rendering is skipped at all (:func:`installed`) and the
    connection's logger is a ``DummyLogger`` (grpclib's connections have no
    other: a receiver may ask once, when the connection is made).
    """
    logger = connection.config.logger
    return installed() and type(logger) is DummyLogger


def _frame_repr(frame: Frame) -> str:
    """The frame as hyperframe renders it, unless h2's trace line with a DummyLogger asks."""
    caller = sys._getframe(1)
    if caller.f_code is _RECEIVE_FRAME:
        if RECEIVING.quiet:
            return NOT_RENDERED
        connection = caller.f_locals.get("self")
        logger = getattr(getattr(connection, "config", None), "logger", None)
        if type(logger) is DummyLogger and DummyLogger.trace is _no_op_trace:
            return NOT_RENDERED
    return _original(frame)


def install() -> bool:
    """Skip the rendering for h2's discarded trace line, if this h2 and hyperframe are as checked.

    Returns:
        Whether it is installed (also when it already was).
    """
    if installed():
        return True
    if Frame.__dict__.get("__repr__") is not _original or _RECEIVE_FRAME is None:
        return False
    if getattr(_original, "__module__", None) != "hyperframe.frame":
        return False
    if not renders_only_for_trace(_receive_frame) or not trace_is_a_no_op(_no_op_trace):
        return False
    Frame.__repr__ = _frame_repr  # type: ignore[method-assign]
    return True


def installed() -> bool:
    """Whether hyperframe's frames render through :func:`_frame_repr`."""
    return Frame.__dict__.get("__repr__") is _frame_repr


class H2SurfaceChanged(RuntimeError):
    """The installed h2 no longer has something bugless_core relies on."""


def keep_streams_on_graceful_goaway(connection: H2Connection) -> None:
    """Make a graceful GOAWAY received on ``connection`` leave its open streams going.

    See the module docstring. The ``ConnectionTerminated`` event is the one
    h2 would emit (error code, ``last_stream_id``, additional data).

    Raises:
        H2SurfaceChanged: h2 no longer dispatches received frames through
            the instance's ``_frame_dispatch_table``.
    """
    table = vars(connection).get("_frame_dispatch_table")
    if not isinstance(table, dict) or not callable(table.get(GoAwayFrame)):
        raise H2SurfaceChanged(
            "h2.connection.H2Connection._frame_dispatch_table no longer maps GoAwayFrame "
            "to its handler; bugless_core._compat.h2 relies on it"
        )
    receive_goaway: Callable[[GoAwayFrame], tuple[list[Frame], list[Event]]] = table[GoAwayFrame]

    def receive(frame: GoAwayFrame) -> tuple[list[Frame], list[Event]]:
        if frame.error_code != ErrorCodes.NO_ERROR:
            return receive_goaway(frame)
        event = ConnectionTerminated()
        event.error_code = ErrorCodes.NO_ERROR
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]

    table[GoAwayFrame] = receive
