"""Asserting on gRPC errors as a client sees them."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError


async def expect_status(call: Awaitable[Any], status: Status) -> GRPCError:
    """Await ``call``, which must fail with ``status``; return the error."""
    with pytest.raises(GRPCError) as caught:
        await call
    assert caught.value.status is status, caught.value.message
    return caught.value
