"""``bugless auth migrate|user add|serve`` as subprocesses, called with grpcurl."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path

import asyncpg
import pytest
from auth_support import KeyFiles, unique

from bugless_auth.sessions import SessionStore
from bugless_auth.store import IdentityStore
from bugless_core.migrations import load_migrations
from bugless_testing.program import BUGLESS_SCRIPT

BIN = Path(sys.executable).parent
GRPCURL = shutil.which("grpcurl", path=str(BIN)) or "grpcurl"


async def run(*args: str, env: dict[str, str], stdin: bytes | None = None) -> str:
    process = await asyncio.create_subprocess_exec(
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    # Generous: a CLI process imports the whole service stack, which takes a
    # while on a loaded CI machine.
    async with asyncio.timeout(180):
        stdout, stderr = await process.communicate(stdin)
    assert process.returncode == 0, f"{args}: {stderr.decode()}"
    return stdout.decode()


@pytest.fixture
def cli_env(auth_database: str) -> dict[str, str]:
    return {
        **os.environ,
        "BUGLESS_AUTH_DATABASE_URL": auth_database,
        "BUGLESS_AUTH_SCHEMA": f"cli_{unique('s').replace('-', '_')}",
        "BUGLESS_AUTH_ARGON2_TIME_COST": "1",
        "BUGLESS_AUTH_ARGON2_MEMORY_KIB": "1024",
        "BUGLESS_AUTH_ARGON2_PARALLELISM": "1",
    }


async def test_user_add_then_grpcurl_sign_in_against_auth_serve(
    cli_env: dict[str, str], key_files: KeyFiles
) -> None:
    latest = load_migrations("bugless_auth")[-1].version
    assert f"is at version {latest}" in await run(BUGLESS_SCRIPT, "auth", "migrate", env=cli_env)
    added = json.loads(
        await run(
            BUGLESS_SCRIPT,
            "auth",
            "user",
            "add",
            "root",
            "--admin",
            "--groups",
            "ops",
            "--json",
            env=cli_env,
        )
    )
    assert added["groups"] == ["ops", "admins"]
    generated = added["password"]
    await run(
        BUGLESS_SCRIPT,
        "auth",
        "user",
        "add",
        "ann",
        "--password-stdin",
        env=cli_env,
        stdin=b"ann-password\n",
    )

    server = await asyncio.create_subprocess_exec(
        BUGLESS_SCRIPT,
        "auth",
        "serve",
        "--insecure-local",
        "--authenticator",
        "local",
        "--port",
        "0",  # the kernel picks one; read back from the log line below
        "--token-key-file",
        str(key_files.first),
        "--drain-seconds",
        "0",
        env=cli_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(180):
            while True:
                assert server.stdout is not None
                line = (await server.stdout.readline()).decode()
                assert line, "bugless auth serve exited before serving"
                serving = re.search(r"serving gRPC on 127\.0\.0\.1:(\d+)", line)
                if serving:
                    address = f"127.0.0.1:{serving[1]}"
                    break
        answer = json.loads(
            await run(
                GRPCURL,
                "-plaintext",
                "-d",
                json.dumps({"username": "root", "password": generated}),
                address,
                "bugless.v1.Authenticator/AuthenticatePassword",
                env=cli_env,
            )
        )
        assert answer["identity"]["user"]["username"] == "root"
        assert "manage_users" in answer["identity"]["permissions"]
        ann = json.loads(
            await run(
                GRPCURL,
                "-plaintext",
                "-d",
                json.dumps({"username": "ann", "password": "ann-password"}),
                address,
                "bugless.v1.Authenticator/AuthenticatePassword",
                env=cli_env,
            )
        )
        assert ann["identity"]["user"]["userId"].startswith("u_")
        health = json.loads(
            await run(GRPCURL, "-plaintext", address, "grpc.health.v1.Health/Check", env=cli_env)
        )
        assert health["status"] == "SERVING"

        await run(BUGLESS_SCRIPT, "auth", "user", "disable", "ann", env=cli_env)
        await run(
            BUGLESS_SCRIPT,
            "auth",
            "user",
            "set-password",
            "root",
            "--password",
            "changed-pw",
            env=cli_env,
        )
        await run(
            BUGLESS_SCRIPT, "auth", "user", "passwd", "root", "--password", "again-pw", env=cli_env
        )
    finally:
        server.send_signal(signal.SIGTERM)
        async with asyncio.timeout(180):
            await server.wait()
    assert server.returncode == 0


async def test_migrate_logs_each_migration_it_applies(cli_env: dict[str, str]) -> None:
    latest = load_migrations("bugless_auth")
    first = await asyncio.create_subprocess_exec(
        BUGLESS_SCRIPT, "auth", "migrate", env=cli_env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(180):
        out, err = await first.communicate()
    assert first.returncode == 0, err.decode()
    assert f"is at version {latest[-1].version}" in out.decode()
    for migration in latest:
        assert f"applied migration {migration.version:04d}_{migration.name}" in err.decode()
    again = await asyncio.create_subprocess_exec(
        BUGLESS_SCRIPT, "auth", "migrate", "--log-json", env=cli_env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(180):
        _, err = await again.communicate()
    said = [json.loads(line)["message"] for line in err.decode().splitlines()]
    schema = cli_env["BUGLESS_AUTH_SCHEMA"]
    assert said == [
        f"bugless-auth schema {schema!r}: at version {latest[-1].version} already, nothing to apply"
    ]


async def test_user_add_refuses_a_look_alike_name_and_writes_nothing(
    cli_env: dict[str, str],
) -> None:
    await run(BUGLESS_SCRIPT, "auth", "migrate", env=cli_env)
    name = "p\u0430ul"  # a Cyrillic "a" among Latin letters: passes for "paul"
    process = await asyncio.create_subprocess_exec(
        BUGLESS_SCRIPT,
        "auth",
        "user",
        "add",
        name,
        "--password-stdin",
        env=cli_env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(180):
        stdout, stderr = await process.communicate(b"paul-password\n")

    assert process.returncode == 2  # a value the command refuses: bad usage
    assert stdout == b""
    said = stderr.decode()
    assert f"Error: USERNAME: {name!r} cannot be a username: it mixes scripts" in said
    assert "Traceback" not in said
    conn = await asyncpg.connect(
        cli_env["BUGLESS_AUTH_DATABASE_URL"],
        server_settings={"search_path": cli_env["BUGLESS_AUTH_SCHEMA"]},
    )
    try:
        assert await conn.fetchval("SELECT count(*) FROM users") == 0
    finally:
        await conn.close()


#: What ``auth migrate`` and ``auth serve`` say of ``--database-dialect cockroach``
#: on a PostgreSQL at READ COMMITTED.
_DIALECT_REFUSED = (
    "Error: database_dialect cockroach on PostgreSQL (compatibility mode) needs "
    "default_transaction_isolation = serializable, the server has 'read committed': "
    "ALTER DATABASE ... SET default_transaction_isolation = 'serializable'"
)


async def _schema_made(cli_env: dict[str, str]) -> bool:
    """Whether the schema the environment names exists."""
    conn = await asyncpg.connect(cli_env["BUGLESS_AUTH_DATABASE_URL"])
    try:
        return bool(
            await conn.fetchval(
                "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
                cli_env["BUGLESS_AUTH_SCHEMA"],
            )
        )
    finally:
        await conn.close()


async def test_migrate_on_a_dialect_the_server_cannot_run_is_bad_configuration(
    cli_env: dict[str, str],
) -> None:
    """``auth migrate --database-dialect cockroach`` on PostgreSQL at READ COMMITTED exits 2.

    The setting does not fit the server: bad configuration in the exit-status
    table, said as what to change, with nothing made. Before, the refusal was
    a FailedPrecondition and the command exited 1, a failed service's status.
    """
    said = await _refused(
        "auth", "migrate", "--database-dialect", "cockroach", env=cli_env, status=2
    )
    assert said == _DIALECT_REFUSED
    assert not await _schema_made(cli_env)


async def test_serve_on_a_dialect_the_server_cannot_run_is_bad_configuration(
    cli_env: dict[str, str], key_files: KeyFiles
) -> None:
    """``auth serve --database-dialect cockroach`` on PostgreSQL at READ COMMITTED exits 2.

    The same setting ``auth migrate`` refuses with 2, and ``model serve``
    refuses its own with (a locality on PostgreSQL): bad configuration, said
    as what to change, nothing served or made. Before, ``serve`` exited 1,
    the status of a failed start that is no one's setting.
    """
    said = await _refused(
        "auth", "serve", "--insecure-local", "--port", "0", "--token-key-file",
        str(key_files.first), "--database-dialect", "cockroach", "--migrate",
        env=cli_env, status=2,
    )  # fmt: skip
    assert said.splitlines()[-1] == _DIALECT_REFUSED
    assert "Traceback" not in said
    assert not await _schema_made(cli_env)


async def _refused(*args: str, env: dict[str, str], stdin: bytes = b"", status: int) -> str:
    """``bugless ARGS`` that must fail with exit ``status``: its error line."""
    process = await asyncio.create_subprocess_exec(
        BUGLESS_SCRIPT,
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(180):
        _, stderr = await process.communicate(stdin)
    assert process.returncode == status, stderr.decode()
    return stderr.decode().strip()


async def test_user_commands_name_the_argument_or_option_a_refusal_is_about(
    cli_env: dict[str, str],
) -> None:
    """``USERNAME: ...``, ``--password-stdin: ...``, not the gRPC field (``username: ...``)."""
    await run(BUGLESS_SCRIPT, "auth", "migrate", env=cli_env)
    nobody = unique("nobody")
    add = ("auth", "user", "add", unique("ann"))
    short = await _refused(*add, "--password-stdin", env=cli_env, stdin=b"short\n", status=2)
    assert short == "Error: --password-stdin: use at least 8 characters"
    assert await _refused(*add, "--password", "short", env=cli_env, status=2) == (
        "Error: --password: use at least 8 characters"
    )
    for command in ("set-password", "disable", "sessions"):
        said = await _refused("auth", "user", command, nobody, env=cli_env, status=3)
        assert said.startswith("Error: USERNAME: no "), (command, said)
        assert f"is called {nobody!r}" in said, (command, said)
    conn = await asyncpg.connect(
        cli_env["BUGLESS_AUTH_DATABASE_URL"],
        server_settings={"search_path": cli_env["BUGLESS_AUTH_SCHEMA"]},
    )
    try:
        assert await conn.fetchval("SELECT count(*) FROM users") == 0
    finally:
        await conn.close()


async def test_user_add_of_a_taken_name_exits_with_the_conflict_status(
    cli_env: dict[str, str],
) -> None:
    """A name taken is 4, as the client commands say a conflict; nothing is written.

    It used to exit 1, the status of a service that failed, where the
    documented table (``bugless --help``, docs/cli.md) gives a name taken 4.
    """
    await run(BUGLESS_SCRIPT, "auth", "migrate", env=cli_env)
    name = unique("zoe")
    await run(
        BUGLESS_SCRIPT,
        "auth",
        "user",
        "add",
        name,
        "--password-stdin",
        env=cli_env,
        stdin=b"zoe-pass1\n",
    )
    said = await _refused(
        "auth", "user", "add", name.upper(), "--password", "other-pass", env=cli_env, status=4
    )
    assert said == f"Error: USERNAME: {name.upper()!r} is taken; choose another username"
    conn = await asyncpg.connect(
        cli_env["BUGLESS_AUTH_DATABASE_URL"],
        server_settings={"search_path": cli_env["BUGLESS_AUTH_SCHEMA"]},
    )
    try:
        assert await conn.fetchval("SELECT count(*) FROM users") == 1
    finally:
        await conn.close()


async def test_serve_refuses_an_unknown_authenticator(
    cli_env: dict[str, str], key_files: KeyFiles
) -> None:
    process = await asyncio.create_subprocess_exec(
        BUGLESS_SCRIPT,
        "auth",
        "serve",
        "--insecure-local",
        "--authenticator",
        "local,lcoal",
        "--token-key-file",
        str(key_files.first),
        env=cli_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(180):
        _, stderr = await process.communicate()
    assert process.returncode != 0
    assert "unknown authenticator backend 'lcoal'" in stderr.decode()


async def test_user_sessions_lists_a_users_live_sessions_and_ends_one(
    cli_env: dict[str, str],
) -> None:
    await run(BUGLESS_SCRIPT, "auth", "migrate", env=cli_env)
    await run(
        BUGLESS_SCRIPT,
        "auth",
        "user",
        "add",
        "ann",
        "--password-stdin",
        env=cli_env,
        stdin=b"ann-password\n",
    )
    store = await IdentityStore.open(
        cli_env["BUGLESS_AUTH_DATABASE_URL"], cli_env["BUGLESS_AUTH_SCHEMA"], pool_max_size=1
    )
    try:
        [ann] = await store.users_by_usernames(["ann"])
        sessions = SessionStore(store)
        for session_id, address in (("laptop-session", "192.0.2.1"), ("phone-session", "")):
            refused = await sessions.record(
                session_id,
                user_id=ann.user_id,
                authenticator="local",
                client_address=address,
                expires_at=time.time() + 3600,
            )
            assert refused is None
            await asyncio.sleep(0.01)  # phone signed in last: listed first

        listed = json.loads(
            await run(BUGLESS_SCRIPT, "auth", "user", "sessions", "ann", "--json", env=cli_env)
        )
        assert [(s["session_id"], s["client_address"]) for s in listed] == [
            ("phone-session", ""),
            ("laptop-session", "192.0.2.1"),
        ]
        assert listed[0]["authenticator"] == "local"
        shown = await run(
            BUGLESS_SCRIPT,
            "auth",
            "user",
            "sessions",
            "ann",
            "--end",
            "laptop-session",
            env=cli_env,
        )
        assert "phone-session" in shown
        assert "laptop-session" not in shown
        assert not await sessions.is_live("laptop-session")
        assert await sessions.is_live("phone-session")

        process = await asyncio.create_subprocess_exec(
            BUGLESS_SCRIPT,
            "auth",
            "user",
            "sessions",
            "ann",
            "--end",
            "laptop-session",
            env=cli_env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(180):
            _, stderr = await process.communicate()
        assert process.returncode == 3  # not found, as the client commands say it
        said = stderr.decode()
        assert "ann has no live session 'laptop-session'" in said
        assert "Traceback" not in said

        # A service acting for ann (the notifier's IssueAssertion) is listed apart.
        refused = await sessions.record(
            "notifier-session",
            user_id=ann.user_id,
            authenticator="service",
            client_address="notify",
            expires_at=time.time() + 3600,
        )
        assert refused is None
        for kind, expected in (
            ("services", ["notifier-session"]),
            ("people", ["phone-session"]),
            ("all", ["notifier-session", "phone-session"]),
        ):
            shown = await run(
                BUGLESS_SCRIPT,
                "auth",
                "user",
                "sessions",
                "ann",
                "--kind",
                kind,
                "--json",
                env=cli_env,
            )
            assert [s["session_id"] for s in json.loads(shown)] == expected
    finally:
        await store.close()


async def test_user_sessions_end_all_ends_every_live_session_of_the_kind_and_says_how_many(
    cli_env: dict[str, str],
) -> None:
    await run(BUGLESS_SCRIPT, "auth", "migrate", env=cli_env)
    for username in ("ann", "bob"):
        await run(
            BUGLESS_SCRIPT,
            "auth",
            "user",
            "add",
            username,
            "--password-stdin",
            env=cli_env,
            stdin=b"a-password\n",
        )
    store = await IdentityStore.open(
        cli_env["BUGLESS_AUTH_DATABASE_URL"], cli_env["BUGLESS_AUTH_SCHEMA"], pool_max_size=1
    )
    try:
        users = {user.username: user for user in await store.users_by_usernames(["ann", "bob"])}
        ann, bob = users["ann"], users["bob"]
        sessions = SessionStore(store)
        for session_id, owner, authenticator in (
            ("ann-laptop", ann, "local"),
            ("ann-phone", ann, "local"),
            ("ann-notifier", ann, "service"),
            ("bob-laptop", bob, "local"),
        ):
            refused = await sessions.record(
                session_id,
                user_id=owner.user_id,
                authenticator=authenticator,
                client_address="192.0.2.1",
                expires_at=time.time() + 3600,
            )
            assert refused is None

        both = ("--end", "ann-laptop", "--end-all")
        process = await asyncio.create_subprocess_exec(
            BUGLESS_SCRIPT,
            *("auth", "user", "sessions", "ann", *both),
            env=cli_env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(180):
            _, stderr = await process.communicate()
        assert process.returncode == 2
        assert "give it or --end, not both" in stderr.decode()
        assert await sessions.is_live("ann-laptop")  # the refused command ended nothing

        services = json.loads(
            await run(
                BUGLESS_SCRIPT,
                *("auth", "user", "sessions", "ann", "--end-all", "--kind", "services", "--json"),
                env=cli_env,
            )
        )
        assert services == {"sessions_ended": 1, "sessions": []}
        assert not await sessions.is_live("ann-notifier")
        assert await sessions.is_live("ann-phone")

        shown = await run(
            BUGLESS_SCRIPT, "auth", "user", "sessions", "ann", "--end-all", env=cli_env
        )
        assert "ended 2 session(s) of ann" in shown
        assert "ann has no live sessions" in shown
        assert not await sessions.is_live("ann-laptop")
        assert not await sessions.is_live("ann-phone")
        assert await sessions.is_live("bob-laptop")  # another user's session stays

        # Each end is recorded with why, as a single --end's is.
        reasons = await store.run(
            lambda conn: conn.fetch(
                "SELECT session_id, revoked_reason FROM sessions ORDER BY session_id"
            ),
            transaction=False,
        )
        assert {row["session_id"]: row["revoked_reason"] for row in reasons} == {
            "ann-laptop": "ended with bugless auth user sessions --end-all",
            "ann-notifier": "ended with bugless auth user sessions --end-all",
            "ann-phone": "ended with bugless auth user sessions --end-all",
            "bob-laptop": "",
        }

        again = json.loads(
            await run(
                BUGLESS_SCRIPT,
                "auth",
                "user",
                "sessions",
                "ann",
                "--end-all",
                "--json",
                env=cli_env,
            )
        )
        assert again == {"sessions_ended": 0, "sessions": []}
    finally:
        await store.close()
