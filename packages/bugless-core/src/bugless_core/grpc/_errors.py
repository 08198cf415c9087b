"""Mapping errors raised in handlers to gRPC statuses, once for every service."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Coroutine
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


def grpc_errors(
    fn: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """Map BuglessError to its status and anything else to a logged INTERNAL."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except BuglessError as exc:
            raise to_grpc_error(exc) from exc
        except GRPCError:
            raise
        except Exception as exc:
            raise internal_error(fn.__name__, exc) from exc

    return wrapper
