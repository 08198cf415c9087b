"""Lease renewal on a real PostgreSQL: a database outage is a warning, a bug is supervised."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from bugless_core.errors import Unavailable
from bugless_core.leases import (
    CREATE_LEASES,
    TAKE_LEASE,
    held_lease,
    renew_every,
)
from bugless_dev.postgres import ThrowawayPostgres
from bugless_testing.polling import eventually
from bugless_testing.ports import refused_port

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

    def outage_lines() -> int:  # its first failure a WARNING, then DEBUG lines
        return len([r for r in caplog.records if r.name == "bugless_core.leases"])

    with caplog.at_level(logging.DEBUG):
        async with _renewing(closed, "closed", registry, expected):
            await eventually(
                lambda: failures() + outage_lines() >= 2, "two failed renewals", within=30
            )
    logged = [r for r in caplog.records if r.name == "bugless.supervision"]
    if passed:
        assert logged == []
        assert failures() == 0
        outage = [r for r in caplog.records if r.name == "bugless_core.leases"]
        assert [r.levelno for r in outage[:2]] == [logging.WARNING, logging.DEBUG]
        assert "renewing lease closed: InterfaceError" in outage[0].getMessage()
    else:
        assert outage_lines() == 0
        assert len(logged) == failures() >= 2
        assert all(r.levelno == logging.ERROR for r in logged)
        assert logged[0].exc_info is not None
        assert logged[0].exc_info[0] is asyncpg.InterfaceError


def _renewal_records(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "bugless_core.leases" and r.getMessage().startswith(f"renewing lease {name}:")
    ]


async def test_a_database_outage_during_renewal_is_one_warning_and_renewal_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    with refused_port() as port:
        away = await asyncpg.create_pool(
            f"postgresql://nobody@127.0.0.1:{port}/none", min_size=0, max_size=1
        )
        try:
            with caplog.at_level(logging.DEBUG, logger="bugless_core.leases"):
                async with _renewing(away, "outage", registry):
                    await eventually(
                        lambda: len(_renewal_records(caplog, "outage")) >= 10,
                        "ten failed renewals",
                        within=30,
                    )
        finally:
            await away.close()
    first, *others = _renewal_records(caplog, "outage")
    assert first.levelno == logging.WARNING
    assert first.exc_info is None
    assert "renewing lease outage: ConnectionRefusedError" in first.getMessage()
    assert len(others) >= 9
    assert all(r.levelno == logging.DEBUG for r in others)  # within the minute: no reminder
    assert not [r for r in caplog.records if r.name == "bugless.supervision"]
    assert (
        registry.get_sample_value(
            "bugless_background_failures_total", {"loop": "lease_renewal:outage"}
        )
        == 0
    )


async def test_renewals_refused_for_many_rounds_log_one_warning_and_their_end_one_info(
    database: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The database refuses the renewing role's connections (NOLOGIN) for ten
    # renewals or more, then lets it in again. The pool closes a connection
    # as soon as it is idle, so each renewal connects anew (and none is cut
    # off mid-statement, which is not what this test is about).
    role = f"lease_renewer_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(database)
    renewing: asyncpg.Pool | None = None
    try:
        await admin.execute(CREATE_LEASES)
        await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'renewer-password'")
        await admin.execute(f"GRANT SELECT, UPDATE ON bugless_leases TO {role}")
        assert await admin.fetchrow(TAKE_LEASE, "refused", "me", 60_000) is not None
        parts = urllib.parse.urlsplit(database)
        as_role = parts._replace(
            netloc=f"{role}:renewer-password@{parts.hostname}:{parts.port}"
        ).geturl()
        renewing = await asyncpg.create_pool(
            as_role, min_size=0, max_size=1, max_inactive_connection_lifetime=0.001
        )
        with caplog.at_level(logging.DEBUG, logger="bugless_core.leases"):
            async with _renewing(renewing, "refused", CollectorRegistry()):
                await admin.execute(f"ALTER ROLE {role} NOLOGIN")
                await eventually(
                    lambda: len(_renewal_records(caplog, "refused")) >= 10,
                    "ten failed renewals",
                    within=30,
                )
                await admin.execute(f"ALTER ROLE {role} LOGIN")

                def ended() -> bool:
                    return any(
                        r.levelno == logging.INFO for r in _renewal_records(caplog, "refused")
                    )

                await eventually(ended, "a renewal getting through", within=30)
    finally:
        if renewing is not None:
            await renewing.close()
        await admin.execute(f"DROP OWNED BY {role}")
        await admin.execute(f"DROP ROLE {role}")
        await admin.close()
    logged = _renewal_records(caplog, "refused")
    assert [r.levelno for r in logged if r.levelno > logging.DEBUG] == [
        logging.WARNING,
        logging.INFO,
    ]
    assert len(logged) >= 11
    assert logged[0] is next(r for r in logged if r.levelno == logging.WARNING)
    assert logged[-1].levelno == logging.INFO
    assert logged[-1].__dict__["failed_rounds"] >= 10
    assert "failed rounds)" in logged[-1].getMessage()
    assert not [r for r in caplog.records if r.name == "bugless.supervision"]


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
