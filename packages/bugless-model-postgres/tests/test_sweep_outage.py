"""The attachment sweep through a database outage: one warning, one info, and no bug logged.

The Model sweeps orphaned attachment content every ``sweep_seconds``
(:func:`bugless_core.model.runner.sweep_periodically`). Here it sweeps a real
backend and its database blob store through a TCP proxy whose cable the test
pulls for many rounds, then plugs back: the outage must be logged when it
starts and when a sweep works again (its rounds between at DEBUG), and never
taken for a bug (an ERROR with a traceback, counted as a failure).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

from bugless_core.attachments import AttachmentSettings
from bugless_core.model.backend import ModelSettings
from bugless_core.model.runner import sweep_periodically
from bugless_model_postgres import DatabaseBlobStore, PostgresBackend
from bugless_testing.cuttable_proxy import CuttableProxy, via_proxy
from bugless_testing.model_backends import opened_model

#: Failed sweeps the outage lasts.
ROUNDS = 5


async def _until(check: Callable[[], bool], what: str) -> None:
    for _ in range(3000):  # a bound on a wait for an event: 30 s
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def test_a_sweep_outage_of_many_rounds_is_one_warning_and_its_end_one_info(
    model_settings: ModelSettings,
    bugless_model_backend: PostgresBackend,
    caplog: pytest.LogCaptureFixture,
) -> None:
    del bugless_model_backend  # only its migration
    real = urlsplit(model_settings.database_url)
    proxy = CuttableProxy(real.hostname or "127.0.0.1", real.port or 5432)
    await proxy.start()
    settings = dataclasses.replace(
        model_settings,
        database_url=via_proxy(model_settings.database_url, proxy.port),
        pool_min_size=1,
        pool_max_size=2,
    )

    def lines() -> list[logging.LogRecord]:
        return [
            r
            for r in caplog.records
            if r.name == "bugless.model" and r.getMessage().startswith("attachment sweep: ")
        ]

    try:
        async with opened_model(PostgresBackend, settings, DatabaseBlobStore) as backend:
            with caplog.at_level(logging.DEBUG):
                sweeping = asyncio.create_task(
                    sweep_periodically(backend, AttachmentSettings(sweep_seconds=0.02))
                )
                try:
                    await proxy.cut()
                    await _until(lambda: len(lines()) >= ROUNDS, f"{ROUNDS} failed sweeps")
                    await proxy.start()
                    await _until(
                        lambda: any(r.levelno == logging.INFO for r in lines()),
                        "a sweep that works again",
                    )
                finally:
                    sweeping.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await sweeping
    finally:
        with contextlib.suppress(Exception):
            await proxy.cut()

    logged = lines()
    assert [r.levelno for r in logged if r.levelno > logging.DEBUG] == [
        logging.WARNING,
        logging.INFO,
    ]
    assert logged[0].levelno == logging.WARNING
    assert logged[0].exc_info is None
    assert "trying again at the next interval" in logged[0].getMessage()
    assert logged[-1].levelno == logging.INFO
    assert logged[-1].__dict__["failed_rounds"] >= ROUNDS
    assert not [r for r in caplog.records if r.name == "bugless.supervision"]
