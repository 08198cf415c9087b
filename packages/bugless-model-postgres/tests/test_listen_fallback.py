"""Watch keeps serving when the change feed's LISTEN fails, whatever the reason.

The listener takes a connection of its own, and so can fail where the pool's
connections, opened earlier, go on working: here the Model's role loses its
CONNECT privilege (as in a database restored or handed over under the
Model), so the listener's connection is refused with 42501, which is no
outage. Readers poll meanwhile, the failure is logged once at ERROR, and
LISTEN is back once the role may connect again. A real PostgreSQL refuses
the connection; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import urllib.parse
from collections.abc import AsyncGenerator, AsyncIterator

import asyncpg
import pytest
from write_support import ADMIN, fresh_component

from bugless_core.model.backend import ModelSettings
from bugless_dev.postgres import ThrowawayPostgres
from bugless_model_postgres import PostgresBackend, _watch
from bugless_proto import v1

SECRET = "test-page-token-secret-0123456789"
_WATCH_LOGGER = _watch.__name__


async def _comment(backend: PostgresBackend, issue: v1.Issue, text: str) -> v1.Issue:
    response = await backend.change_issue(
        v1.ChangeIssueRequest(
            caller=ADMIN, issue_id=issue.id, expected_version=issue.version, comment=text
        )
    )
    assert response.issue is not None
    return response.issue


async def _eventually(condition: object, what: str) -> None:
    for _ in range(200):
        if callable(condition) and condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(what)


@pytest.fixture
async def revocable(
    postgres_server: ThrowawayPostgres,
) -> AsyncIterator[tuple[asyncpg.Connection, str, str]]:
    """(a superuser connection, the database's name, its owner's DSN): a migrated database
    owned by a role of its own, whose CONNECT privilege the superuser may revoke."""
    role = f"listen_{secrets.token_hex(3)}"
    url = await postgres_server.acreate_database("listen_fallback")
    parts = urllib.parse.urlsplit(url)
    database = parts.path.lstrip("/")
    admin = await asyncpg.connect(postgres_server.url)  # not to the database it drops
    await admin.execute(f"CREATE ROLE {role} LOGIN")
    await admin.execute(f'ALTER DATABASE "{database}" OWNER TO {role}')
    as_role = parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port}").geturl()
    try:
        yield admin, database, as_role
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()


async def test_watch_polls_when_listen_fails_on_an_error_that_is_no_outage(
    revocable: tuple[asyncpg.Connection, str, str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin, database, as_role = revocable
    monkeypatch.setattr(_watch, "LISTEN_RETRY_SECONDS", 0.1)
    caplog.set_level(logging.DEBUG, logger=_WATCH_LOGGER)
    settings = ModelSettings(
        database_url=as_role, page_token_secret=SECRET, pool_min_size=4, pool_max_size=4
    )
    await PostgresBackend.migrate(settings)
    backend = await PostgresBackend.open(settings)
    stream: AsyncGenerator[v1.WatchEvent, None] | None = None
    try:
        component = await fresh_component(backend, "listen")
        created = await backend.create_issue(
            v1.CreateIssueRequest(
                caller=ADMIN, fields=v1.IssueFields(title="listened", component_id=component.id)
            )
        )
        # The pool's connections are open; no new one is let in from here on.
        role = urllib.parse.urlsplit(as_role).username
        await admin.execute(f'REVOKE CONNECT ON DATABASE "{database}" FROM PUBLIC, {role}')
        watch = backend.watch(v1.WatchRequest(caller=ADMIN, issue_id=created.id))
        assert isinstance(watch, AsyncGenerator)
        stream = watch
        # This used to raise the listener's InsufficientPrivilegeError.
        marker = await asyncio.wait_for(anext(stream), 10)
        assert marker == v1.WatchEvent(subscribed=True, position=marker.position)
        first = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.5)  # several polls, several LISTEN tries
        issue = await _comment(backend, created, "seen by polling")
        event = await asyncio.wait_for(first, 10)
        assert event.entry is not None
        assert event.entry.comment == "seen by polling"
        assert backend._feed._conn is None, "LISTEN cannot have worked"

        listen = [r for r in caplog.records if r.name == _WATCH_LOGGER and "LISTEN" in r.msg]
        errors = [r for r in listen if r.levelno >= logging.ERROR]
        assert len(errors) == 1, [r.getMessage() for r in listen]
        assert errors[0].exc_info is not None
        refused = errors[0].exc_info[1]
        assert isinstance(refused, asyncpg.InsufficientPrivilegeError), repr(refused)
        assert not [r for r in listen if r.levelno == logging.WARNING], "not an outage"
        assert [r for r in listen if r.levelno == logging.DEBUG], "the retries, at DEBUG"

        # The role may connect again: LISTEN is back, said once, and wakes the stream.
        await admin.execute(f'GRANT CONNECT ON DATABASE "{database}" TO {role}')
        second = asyncio.ensure_future(anext(stream))
        await _eventually(lambda: backend._feed._conn is not None, "LISTEN is back")
        back = [r for r in caplog.records if r.name == _WATCH_LOGGER and "working again" in r.msg]
        assert [r.levelno for r in back] == [logging.INFO]
        await _comment(backend, issue, "woken by NOTIFY")
        event = await asyncio.wait_for(second, 10)
        assert event.entry is not None
        assert event.entry.comment == "woken by NOTIFY"
    finally:
        if stream is not None:
            await stream.aclose()
        await backend.close()
