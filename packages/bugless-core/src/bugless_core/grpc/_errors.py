"""Mapping errors raised in handlers to gRPC statuses, once for every service."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from bugless_core.errors import BuglessError, to_grpc_error

_log = logging.getLogger("bugless_core.grpc")
P = ParamSpec("P")
R = TypeVar("R")


def internal_error(method: str, exc: BaseException) -> GRPCError:
    """Log an unexpected failure and return the status the caller gets."""
    _log.error("unexpected error in %s", method, exc_info=exc)
    return GRPCError(Status.INTERNAL, f"internal error in {method}; the server log has details")


@contextmanager
def handler_errors(method: str) -> Iterator[None]:
    """Raise what escapes the block as the status a gRPC handler answers with.

    A :class:`BuglessError` becomes its status (:func:`to_grpc_error`), a
    ``GRPCError`` raised on purpose passes unchanged, and anything else is
    logged with its traceback and answered as INTERNAL with a generic message,
    so a traceback never reaches a caller. Every handler of every service runs
    inside this (through :func:`grpc_errors`, or directly where a handler is a
    stream or a wrapper); cancellation passes through untouched.

    Args:
        method: The handler's name, for the log and the INTERNAL message.
    """
    try:
        yield
    except BuglessError as exc:
        raise to_grpc_error(exc) from exc
    except GRPCError:
        raise
    except Exception as exc:
        raise internal_error(method, exc) from exc


def grpc_errors(
    fn: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """Run a unary handler inside :func:`handler_errors`."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with handler_errors(fn.__name__):
            return await fn(*args, **kwargs)

    return wrapper
