"""Lease renewal on a real PostgreSQL: a database outage is a warning, a bug is supervised."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from bugless_core.errors import Unavailable
from bugless_core.leases import (
    CREATE_LEASES,
    TAKE_LEASE,
    held_lease,
    is_database_error,
    renew_every,
)
from bugless_dev.postgres import ThrowawayPostgres
from bugless_testing.ports import refused_port

pytest_plugins = ["bugless_testing.postgres"]

#: A third of it between renewals: the test sees several rounds at once.
TTL_MS = 30


@pytest.fixture(scope="module")
async def database(postgres_server: ThrowawayPostgres) -> str:
    return await postgres_server.acreate_database("leases")


@contextlib.asynccontextmanager
async def _renewing(
    pool: Any,
    name: str,
    registry: CollectorRegistry,
    expected: tuple[type[BaseException], ...] = (),
) -> AsyncIterator[None]:
    task = asyncio.create_task(
        renew_every(pool, name, "me", TTL_MS, expected=expected, registry=registry)
    )
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _until(check: Callable[[], bool], what: str) -> None:
    for _ in range(3000):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


@pytest.mark.parametrize("passed", [False, True], ids=["unexpected", "expected"])
async def test_a_bug_in_a_renewal_is_supervised_unless_the_caller_expects_the_error(
    database: str, caplog: pytest.LogCaptureFixture, *, passed: bool
) -> None:
    # The bug: the holder closed its pool while still holding the lease.
    # asyncpg raises its InterfaceError (a client-side error, no sqlstate),
    # which a caller may declare to be its driver's (``expected``).
    closed = await asyncpg.create_pool(database, min_size=1, max_size=1)
    await closed.close()
    registry = CollectorRegistry()
    labels = {"loop": "lease_renewal:closed"}
    expected = (asyncpg.InterfaceError,) if passed else ()

    def failures() -> float:
        return registry.get_sample_value("bugless_background_failures_total", labels) or 0.0

    def warnings() -> int:
        return len([r for r in caplog.records if r.name == "bugless_core.leases"])

    with caplog.at_level(logging.WARNING):
        async with _renewing(closed, "closed", registry, expected):
            await _until(lambda: failures() + warnings() >= 2, "two failed renewals")
    logged = [r for r in caplog.records if r.name == "bugless.supervision"]
    if passed:
        assert logged == []
        assert failures() == 0
        assert "could not renew lease closed: InterfaceError" in caplog.records[0].getMessage()
    else:
        assert warnings() == 0
        assert len(logged) == failures() >= 2
        assert all(r.levelno == logging.ERROR for r in logged)
        assert logged[0].exc_info is not None
        assert logged[0].exc_info[0] is asyncpg.InterfaceError


async def test_a_database_outage_during_renewal_is_a_warning_and_renewal_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    with refused_port() as port:
        away = await asyncpg.create_pool(
            f"postgresql://nobody@127.0.0.1:{port}/none", min_size=0, max_size=1
        )
        try:
            with caplog.at_level(logging.WARNING):
                async with _renewing(away, "outage", registry):
                    await _until(
                        lambda: (
                            len([r for r in caplog.records if "could not renew" in r.message]) >= 2
                        ),
                        "two warnings",
                    )
        finally:
            await away.close()
    warned = [r for r in caplog.records if r.name == "bugless_core.leases"]
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in warned)
    assert "could not renew lease outage: ConnectionRefusedError" in warned[0].getMessage()
    assert not [r for r in caplog.records if r.name == "bugless.supervision"]
    assert (
        registry.get_sample_value(
            "bugless_background_failures_total", {"loop": "lease_renewal:outage"}
        )
        == 0
    )


def test_what_counts_as_the_database_away() -> None:
    class DriverClientError(Exception):
        pass

    class Reported(Exception):
        sqlstate = "57P01"

    assert is_database_error(ConnectionResetError())
    assert is_database_error(Reported())
    assert is_database_error(DriverClientError(), (DriverClientError,))
    assert not is_database_error(DriverClientError())
    assert not is_database_error(KeyError("a bug"))


@pytest.mark.parametrize("body_does", ["waits", "swallows", "is_cancelled_too"])
async def test_a_lease_taken_by_another_holder_stops_the_body(
    database: str, caplog: pytest.LogCaptureFixture, body_does: str
) -> None:
    # The body is told of the loss as a cancellation; held_lease turns it into
    # Unavailable(LEASE_LOST), also when the body swallowed it, but a body
    # cancelled by someone else as well stays cancelled (asyncio.timeout's rule).
    pool = await asyncpg.create_pool(database, min_size=1, max_size=2)
    name = f"taken_{body_does}"
    inside, stopped = asyncio.Event(), asyncio.Event()

    async def body() -> str:
        async with held_lease(pool, name, ttl_ms=TTL_MS * 10, registry=CollectorRegistry()):
            inside.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                stopped.set()
                if body_does == "is_cancelled_too":
                    task = asyncio.current_task()
                    assert task is not None
                    task.cancel()
                    raise
                if body_does == "waits":
                    raise
        return "finished"

    try:
        await pool.execute(CREATE_LEASES)
        with caplog.at_level(logging.ERROR, logger="bugless_core.leases"):
            holding = asyncio.create_task(body())
            async with pool.acquire() as other:
                await inside.wait()
                async with other.transaction():  # no renewal slips in between
                    await other.execute(
                        "UPDATE bugless_leases SET expires_at = now() WHERE name = $1", name
                    )
                    assert await other.fetchrow(TAKE_LEASE, name, "taker", 60_000) is not None
            if body_does == "is_cancelled_too":
                with pytest.raises(asyncio.CancelledError):
                    await holding
            else:
                with pytest.raises(Unavailable, match=f"lost the lease '{name}' to holder 'taker'"):
                    await holding
    finally:
        await pool.close()
    assert stopped.is_set()
    assert "to holder 'taker'" in caplog.records[-1].getMessage()
