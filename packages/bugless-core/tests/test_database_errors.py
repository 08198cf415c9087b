"""asyncpg's "connection gone" errors, provoked on a real PostgreSQL, and the bugs that are not.

``bugless_core.database_errors`` recognises asyncpg's client-side errors by
class name and message without importing the driver; these tests fail first
if an asyncpg upgrade renames one or words it differently.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bugless_core.database_errors import (
    is_connection_lost,
    is_database_error,
    is_statement_given_up,
    is_unreachable,
)
from bugless_dev.postgres import ThrowawayPostgres, start_postgres


@pytest.fixture(scope="module")
async def database(postgres_server: ThrowawayPostgres) -> str:
    return await postgres_server.acreate_database("database_errors")


async def _raised(on: Any, query: str = "SELECT 1", *args: object) -> BaseException:
    """What ``query`` on ``on`` (a connection, its pool's proxy or a pool) raises; it must."""
    try:
        await on.fetchval(query, *args)
    except Exception as exc:
        return exc
    raise AssertionError("the statement did not fail")


def _gone(exc: BaseException) -> bool:
    return is_connection_lost(exc) and is_database_error(exc)


async def _backend_ended(database: str, backend_pid: int) -> None:
    """Wait until the server's backend ``backend_pid`` has exited, as another connection sees it.

    A backend says goodbye before it exits, so by then its client has been
    told. A bound only against a backend that never ends.
    """
    listed = "SELECT count(*) FROM pg_stat_activity WHERE pid = $1"
    admin = await asyncpg.connect(database)
    try:
        async with asyncio.timeout(30):
            while await admin.fetchval(listed, backend_pid):  # noqa: ASYNC110 - no event for it
                await asyncio.sleep(0.02)
    finally:
        await admin.close()


async def _refused_while_stopping(url: str) -> asyncpg.CannotConnectNowError:
    """The refusal of a connection to a server that was told to stop (once it acts on it).

    A connection made before the server handled the signal is closed again
    (the test's last client is another one); a bound only against a server
    that never refuses.
    """
    async with asyncio.timeout(30):
        while True:
            try:
                early = await asyncpg.connect(url)
            except asyncpg.CannotConnectNowError as exc:
                return exc
            await early.close()
            await asyncio.sleep(0.02)


async def test_a_closed_connection_is_gone(database: str) -> None:
    conn = await asyncpg.connect(database)
    await conn.close()
    exc = await _raised(conn)
    assert type(exc) is asyncpg.InterfaceError, repr(exc)
    assert _gone(exc), repr(exc)


async def test_a_connection_the_server_ended_is_gone(database: str) -> None:
    conn = await asyncpg.connect(database)
    other = await asyncpg.connect(database)
    try:
        await other.fetchval("SELECT pg_terminate_backend($1)", conn.get_server_pid())
        # The first statement may meet the server's own error (a sqlstate),
        # every one after it the closed connection.
        errors = [await _raised(conn) for _ in range(3)]
        assert all(is_database_error(e) for e in errors), errors
        assert type(errors[-1]) is asyncpg.InterfaceError, errors
        assert _gone(errors[-1]), errors
    finally:
        await other.close()
        conn.terminate()


async def test_a_connection_back_in_its_pool_is_gone(database: str) -> None:
    pool = await asyncpg.create_pool(database, min_size=1, max_size=1)
    try:
        conn = await pool.acquire()
        await pool.release(conn)
        exc = await _raised(conn)
        assert type(exc) is asyncpg.InterfaceError, repr(exc)
        assert _gone(exc), repr(exc)
    finally:
        await pool.close()
    # A pool the process closed itself is a bug of the process: no retry mends it.
    exc = await _raised(pool)
    assert type(exc) is asyncpg.InterfaceError, repr(exc)
    assert "pool is closed" in str(exc)
    assert not is_connection_lost(exc)


class _HeldEnd:
    """A loopback TCP proxy that passes the server's bytes on but not its end of the stream.

    What the client sees between the server's FATAL message and the socket's
    end, held open for as long as the test needs it.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.server_ended = asyncio.Event()
        self.clients: list[asyncio.StreamWriter] = []

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[int]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        try:
            yield server.sockets[0].getsockname()[1]
        finally:
            server.close()
            for writer in self.clients:
                writer.transport.abort()
            await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.clients.append(writer)
        up_reader, up_writer = await asyncio.open_connection(*self.target)

        async def upstream() -> None:
            with contextlib.suppress(OSError):
                while data := await reader.read(65536):
                    up_writer.write(data)
            up_writer.close()

        async def downstream() -> None:
            with contextlib.suppress(OSError):
                while data := await up_reader.read(65536):
                    writer.write(data)
            self.server_ended.set()  # and the client's socket stays open

        await asyncio.gather(upstream(), downstream())


async def test_a_statement_between_the_servers_goodbye_and_the_end_is_gone(database: str) -> None:
    # The race a lease renewal met in CI: InternalClientError, an outage.
    real = urllib.parse.urlsplit(database)
    proxy = _HeldEnd(real.hostname or "127.0.0.1", real.port or 5432)
    async with proxy.serving() as port:
        via = real._replace(netloc=f"{real.username}@127.0.0.1:{port}").geturl()
        conn = await asyncpg.connect(via)
        other = await asyncpg.connect(database)
        try:
            await other.fetchval("SELECT pg_terminate_backend($1)", conn.get_server_pid())
            await asyncio.wait_for(proxy.server_ended.wait(), timeout=10)
            await asyncio.sleep(0.05)  # the client reads what the proxy wrote
            exc = await _raised(conn, "SELECT 2")
        finally:
            await other.close()
            conn.terminate()
    assert type(exc) is asyncpg.InternalClientError, repr(exc)
    assert "cannot switch to state" in str(exc)
    assert _gone(exc)


async def test_driver_errors_that_are_bugs_are_not_the_database_away(database: str) -> None:
    conn = await asyncpg.connect(database)
    try:
        # A wrong argument type is asyncpg's DataError, which carries SQLSTATE
        # 22000 like the server's own data errors: not a lost connection.
        wrong_type = await _raised(conn, "SELECT $1::int", "one")
        assert isinstance(wrong_type, asyncpg.DataError)
        assert not is_connection_lost(wrong_type)
        wrong_count = await _raised(conn, "SELECT $1::int")
        assert type(wrong_count) is asyncpg.InterfaceError
        busy = await asyncio.gather(
            conn.fetchval("SELECT pg_sleep(0.05)"), _raised(conn), return_exceptions=True
        )
        assert type(busy[1]) is asyncpg.InterfaceError, busy
        for bug in (wrong_count, busy[1], KeyError("a bug")):
            assert isinstance(bug, BaseException)
            assert not is_connection_lost(bug), repr(bug)
            assert not is_database_error(bug), repr(bug)
    finally:
        await conn.close()


def test_what_counts_as_the_database_away() -> None:
    class DriverClientError(Exception):
        pass

    class Reported(Exception):
        sqlstate = "57P01"

    assert is_database_error(ConnectionResetError())
    assert is_database_error(Reported())
    Mistake = type("Mistake", (Exception,), {"sqlstate": "42P01"})  # noqa: N806
    assert not is_database_error(Mistake())
    assert is_database_error(DriverClientError(), (DriverClientError,))
    assert not is_database_error(DriverClientError())
    # The name alone is not asyncpg's class.
    InterfaceError = type("InterfaceError", (Exception,), {})  # noqa: N806
    assert not is_connection_lost(InterfaceError("connection is closed"))


async def test_what_counts_as_unreachable(database: str) -> None:
    # The server ending or refusing connections, by the driver's own classes
    # (what the Model's backends and the Authenticator's store both answer
    # UNAVAILABLE), and a connection terminated mid-statement on a real server.
    for away in (
        asyncpg.AdminShutdownError,
        asyncpg.CrashShutdownError,
        asyncpg.CannotConnectNowError,
        asyncpg.TooManyConnectionsError,
        asyncpg.ConnectionDoesNotExistError,
        asyncpg.ConnectionFailureError,
    ):
        assert is_unreachable(away("gone")), away
    assert is_unreachable(TimeoutError())
    conn = await asyncpg.connect(database)
    other = await asyncpg.connect(database)
    try:
        sleeping = asyncio.create_task(conn.fetchval("SELECT pg_sleep(30)"))
        await asyncio.sleep(0.2)
        await other.fetchval("SELECT pg_terminate_backend($1)", conn.get_server_pid())
        with pytest.raises(asyncpg.PostgresError) as ended:
            await sleeping
        # The server's 57P01 (admin_shutdown), which asyncpg reports as the
        # connection closed mid-statement (08003) with the server's words.
        assert "administrator command" in str(ended.value), repr(ended.value)
        assert is_unreachable(ended.value), repr(ended.value)
        # A statement the server cancelled leaves the connection fine; a SQL
        # mistake is a bug.
        await other.execute("SET statement_timeout = 1")
        cancelled = await _raised(other, "SELECT pg_sleep(1)")
        await other.execute("RESET statement_timeout")
        assert isinstance(cancelled, asyncpg.QueryCanceledError), repr(cancelled)
        assert is_statement_given_up(cancelled), repr(cancelled)
        undefined = await _raised(other, "SELECT no_such_column FROM pg_class")
        assert isinstance(undefined, asyncpg.UndefinedColumnError), repr(undefined)
        assert not is_statement_given_up(undefined), repr(undefined)
        for bug in (cancelled, undefined):
            assert not is_unreachable(bug), repr(bug)
    finally:
        await other.close()
        conn.terminate()


async def test_an_outage_is_told_from_a_sql_bug_by_its_sqlstate_class(database: str) -> None:
    # Outages: a statement the server cancelled (57014), a role over its
    # connection limit (53300), a login refused (28000), a write where only
    # reads are taken (25006, as on a standby). Bugs: an undefined
    # table (42P01), a syntax error (42601), a data exception (22012), a
    # unique violation (23505): a loop logs those with their traceback.
    role = f"limited_{secrets.token_hex(3)}"
    refused = f"refused_{secrets.token_hex(3)}"
    conn = await asyncpg.connect(database)
    try:
        await conn.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 0")
        await conn.execute(f"CREATE ROLE {refused} NOLOGIN")
        outages: list[BaseException] = []
        await conn.execute("SET statement_timeout = 1")
        outages.append(await _raised(conn, "SELECT pg_sleep(1)"))
        await conn.execute("RESET statement_timeout")
        real = urllib.parse.urlsplit(database)
        for user in (role, refused):
            as_user = real._replace(netloc=f"{user}@{real.hostname}:{real.port}").geturl()
            with pytest.raises(asyncpg.PostgresError) as caught:
                await asyncpg.connect(as_user)
            outages.append(caught.value)
        await conn.execute("SET default_transaction_read_only = on")
        outages.append(await _raised(conn, "CREATE TEMP TABLE standby (n int)"))
        await conn.execute("RESET default_transaction_read_only")
        assert [getattr(e, "sqlstate", None) for e in outages] == [
            "57014",
            "53300",
            "28000",
            "25006",
        ]
        assert all(is_database_error(e) for e in outages), outages
        await conn.execute("CREATE TEMP TABLE once (n int PRIMARY KEY)")
        await conn.execute("INSERT INTO once VALUES (1)")
        bugs = [
            await _raised(conn, "SELECT n FROM no_such_table"),
            await _raised(conn, "SELEC 1"),
            await _raised(conn, "SELECT 1 / 0"),
            await _raised(conn, "INSERT INTO once VALUES (1) RETURNING n"),
        ]
        assert [getattr(e, "sqlstate", None) for e in bugs] == ["42P01", "42601", "22012", "23505"]
        assert not any(is_database_error(e) for e in bugs), bugs
    finally:
        await conn.execute(f"DROP ROLE IF EXISTS {role}")
        await conn.execute(f"DROP ROLE IF EXISTS {refused}")
        await conn.close()


async def test_a_lock_not_taken_in_time_is_contention_not_a_bug(database: str) -> None:
    # 55P03, from NOWAIT and from lock_timeout (an operator's ALTER ROLE ...
    # SET lock_timeout): a loop retries it quietly, but the connection is
    # fine, so it is no unreachable database (the Model words it itself).
    holder = await asyncpg.connect(database)
    waiter = await asyncpg.connect(database)
    try:
        await holder.execute("CREATE TABLE IF NOT EXISTS locked (n int PRIMARY KEY)")
        await holder.execute("INSERT INTO locked VALUES (1) ON CONFLICT DO NOTHING")
        async with holder.transaction():
            await holder.execute("SELECT n FROM locked FOR UPDATE")
            nowait = await _raised(waiter, "SELECT n FROM locked FOR UPDATE NOWAIT")
            await waiter.execute("SET lock_timeout = 50")
            timed_out = await _raised(waiter, "SELECT n FROM locked FOR UPDATE")
            await waiter.execute("RESET lock_timeout")
        for exc in (nowait, timed_out):
            assert isinstance(exc, asyncpg.LockNotAvailableError), repr(exc)
            assert exc.sqlstate == "55P03"
            assert is_database_error(exc), repr(exc)
            assert is_statement_given_up(exc), repr(exc)
            assert not is_unreachable(exc), repr(exc)
        assert "lock timeout" in str(timed_out)
    finally:
        await waiter.close()
        await holder.close()


async def test_a_database_that_is_not_there_is_unreachable(database: str) -> None:
    # 3D000: dropped for a restore, renamed, not yet on the new primary.
    missing = urllib.parse.urlsplit(database)._replace(path=f"/gone_{secrets.token_hex(3)}")
    with pytest.raises(asyncpg.PostgresError) as refused:
        await asyncpg.connect(missing.geturl())
    assert isinstance(refused.value, asyncpg.InvalidCatalogNameError), repr(refused.value)
    assert refused.value.sqlstate == "3D000"
    assert is_unreachable(refused.value)
    assert is_database_error(refused.value)


async def test_a_transaction_ended_for_idling_is_the_connection_lost(database: str) -> None:
    # 25P03: the server ends the connection of a transaction idle past
    # idle_in_transaction_session_timeout. asyncpg reads the server's
    # goodbye as the connection closed; a driver that reports the code
    # itself (psycopg) gets the same answer from it.
    conn = await asyncpg.connect(database)
    try:
        await conn.execute("SET idle_in_transaction_session_timeout = 50")
        await conn.execute("BEGIN")
        # Until the server has ended it: a fixed 0.5 s raced the timeout's
        # timer in a backend that a loaded machine runs late.
        await _backend_ended(database, conn.get_server_pid())
        exc = await _raised(conn)
    finally:
        conn.terminate()
    assert type(exc) is asyncpg.InterfaceError, repr(exc)
    assert _gone(exc), repr(exc)
    assert is_unreachable(exc), repr(exc)
    reported = type("IdleInTransactionSessionTimeout", (Exception,), {"sqlstate": "25P03"})
    assert is_unreachable(reported())
    assert is_database_error(reported())


def _postmaster_of(backend_pid: int) -> int:
    """The process id of the server a backend serves (its parent)."""
    for line in Path(f"/proc/{backend_pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise AssertionError(f"no parent of process {backend_pid}")


@pytest.fixture
def own_postgres() -> Iterator[ThrowawayPostgres]:
    """A server of this test's own, to crash and shut down (not the session's)."""
    server = start_postgres()
    assert server.local, "this test crashes and stops a server: it needs one it started"
    try:
        yield server
    finally:
        server.stop()


async def test_a_crashed_starting_or_stopping_server_is_unreachable(
    own_postgres: ThrowawayPostgres,
) -> None:
    # A backend killed makes the server end every connection (57P02,
    # crash_shutdown, which asyncpg reports as the connection closed) and
    # refuse new ones while it recovers; a smart shutdown waiting for its
    # last client refuses them too (57P03, cannot_connect_now, both times).
    url = own_postgres.url
    running = await asyncpg.connect(url)
    victim = await asyncpg.connect(url)
    sleeping = asyncio.ensure_future(running.fetchval("SELECT pg_sleep(30)"))
    await asyncio.sleep(0.2)
    os.kill(victim.get_server_pid(), signal.SIGKILL)
    with pytest.raises(Exception) as crashed:  # noqa: PT011 - the driver words it as it can
        await asyncio.wait_for(sleeping, 10)
    assert is_unreachable(crashed.value), repr(crashed.value)
    running.terminate()
    victim.terminate()
    resetting: list[BaseException] = []
    last: asyncpg.Connection | None = None
    for _ in range(600):  # until recovery is over (a small cluster: well under a second)
        try:
            last = await asyncpg.connect(url)
            break
        except Exception as exc:  # the server resetting: refused, or ended mid-handshake
            resetting.append(exc)
            await asyncio.sleep(0.01)
    assert last is not None, resetting[-1:]
    assert all(is_unreachable(e) for e in resetting), resetting
    refusals = [e for e in resetting if isinstance(e, asyncpg.CannotConnectNowError)]
    try:
        os.kill(_postmaster_of(last.get_server_pid()), signal.SIGTERM)  # a smart shutdown
        # Polled, not 0.3 s later: the server acts on the signal when it runs.
        stopping = await _refused_while_stopping(url)
        refusals.append(stopping)
        assert await last.fetchval("SELECT 1") == 1, "the last client is still served"
    finally:
        await last.close()
    assert all(getattr(e, "sqlstate", None) == "57P03" for e in refusals), refusals
    assert "shutting down" in str(stopping)
    assert all(is_unreachable(e) and is_database_error(e) for e in refusals), refusals
