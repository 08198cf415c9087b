"""``bugless auth user certificates``: an operator lists and revokes another person's certificates.

The real CLI as a subprocess on the session's PostgreSQL; the certificates'
rows are written as the people CA records them (what the API then makes of a
revoked one is ``bugless-api``'s test_cli_certificate_lockout).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import secrets
import time
from typing import Any

import pytest
from auth_support import unique

from bugless_auth.sessions import SessionStore
from bugless_auth.store import IdentityStore
from bugless_auth.user_certificate_commands import REVOKED_BY, REVOKED_REASON
from bugless_testing.program import BUGLESS_SCRIPT


@pytest.fixture
def cli_env(auth_database: str) -> dict[str, str]:
    return {
        **os.environ,
        "BUGLESS_AUTH_DATABASE_URL": auth_database,
        "BUGLESS_AUTH_SCHEMA": f"certs_{unique('s').replace('-', '_')}",
        "BUGLESS_AUTH_ARGON2_TIME_COST": "1",
        "BUGLESS_AUTH_ARGON2_MEMORY_KIB": "1024",
        "BUGLESS_AUTH_ARGON2_PARALLELISM": "1",
    }


async def bugless(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """Run the CLI: exit status, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        BUGLESS_SCRIPT,
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(180):
        stdout, stderr = await process.communicate(b"a-password\n")
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def ok(*args: str, env: dict[str, str]) -> str:
    code, stdout, stderr = await bugless(*args, env=env)
    assert code == 0, f"{args}: {stderr}"
    return stdout


async def add_certificate(
    store: IdentityStore, user_id: str, serial: str, *, label: str, expires_in: float
) -> str:
    """A row as the people CA writes one; its fingerprint."""
    fingerprint = secrets.token_hex(32)
    not_after = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=expires_in)
    await store.run(
        lambda conn: conn.execute(
            "INSERT INTO people_certificates (serial, user_id, fingerprint, label, source, "
            "issued_at, not_after) VALUES ($1, $2, $3, $4, 'device', "
            "now() - $5::float8 * INTERVAL '1 second', $6)",
            serial,
            user_id,
            fingerprint,
            label,
            # Issued before one another, so the list's order is known.
            float(int(serial, 16)),
            not_after,
        )
    )
    return fingerprint


async def test_a_serial_pasted_as_openssl_or_a_browser_shows_it_is_revoked(
    cli_env: dict[str, str],
) -> None:
    """Serials are stored lower-case, unpadded; openssl and viewers pad, colon and shout them.

    ``openssl x509 -serial`` prints whole bytes in upper case, ``-text`` and a
    browser's certificate viewer colon-separated bytes: an operator pasting
    either during a compromise must revoke the certificate, not be told the
    person has none while it stays valid.
    """
    await ok("auth", "migrate", env=cli_env)
    await ok("auth", "user", "add", "cy", "--password-stdin", env=cli_env)
    store = await IdentityStore.open(
        cli_env["BUGLESS_AUTH_DATABASE_URL"], cli_env["BUGLESS_AUTH_SCHEMA"], pool_max_size=1
    )
    try:
        (cy,) = await store.users_by_usernames(["cy"])
        await add_certificate(store, cy.user_id, "c1d2", label="laptop", expires_in=3600)
        await add_certificate(store, cy.user_id, "a1", label="phone", expires_in=3600)
        await add_certificate(store, cy.user_id, "f3", label="tablet", expires_in=3600)
        pasted = ("--revoke", "00:C1:D2", "--revoke", "0x0A 1")
        answer = json.loads(
            await ok("auth", "user", "certificates", "cy", "--json", *pasted, env=cli_env)
        )
        assert answer["certificates_revoked"] == 2
        revoked = (REVOKED_BY, REVOKED_REASON)
        assert await _states(store) == {"c1d2": revoked, "a1": revoked, "f3": None}
    finally:
        await store.close()


async def test_a_stored_label_with_control_characters_is_listed_escaped(
    cli_env: dict[str, str],
) -> None:
    """A label stored before labels were checked reaches the terminal escaped.

    The people CA refuses such labels now (test_people_ca); a row written
    before, or by hand, must still not clear the operator's screen, move the
    cursor (CR) or reorder the line (U+202E) when the list is printed.
    """
    await ok("auth", "migrate", env=cli_env)
    await ok("auth", "user", "add", "eve", "--password-stdin", env=cli_env)
    store = await IdentityStore.open(
        cli_env["BUGLESS_AUTH_DATABASE_URL"], cli_env["BUGLESS_AUTH_SCHEMA"], pool_max_size=1
    )
    try:
        (eve,) = await store.users_by_usernames(["eve"])
        label = "lap\x1b[2J\x1b]0;owned\x07top\rroot\u202eok"
        await add_certificate(store, eve.user_id, "e1", label=label, expires_in=3600)
    finally:
        await store.close()
    listing = await ok("auth", "user", "certificates", "eve", env=cli_env)
    for raw in ("\x1b", "\x07", "\r", "\u202e"):
        assert raw not in listing, repr(raw)
    assert "e1  live    device lap\\x1b[2J\\x1b]0;owned\\x07top\\rroot\\u202eok  " in listing
    shown = json.loads(await ok("auth", "user", "certificates", "eve", "--json", env=cli_env))
    assert [c["label"] for c in shown] == [label]  # JSON escapes them itself


async def test_certificates_are_listed_and_revoked_one_or_all_with_their_sessions(
    cli_env: dict[str, str],
) -> None:
    await ok("auth", "migrate", env=cli_env)
    for username in ("ann", "bob"):
        await ok("auth", "user", "add", username, "--password-stdin", env=cli_env)
    store = await IdentityStore.open(
        cli_env["BUGLESS_AUTH_DATABASE_URL"], cli_env["BUGLESS_AUTH_SCHEMA"], pool_max_size=1
    )
    try:
        users = {u.username: u for u in await store.users_by_usernames(["ann", "bob"])}
        ann, bob = users["ann"].user_id, users["bob"].user_id
        laptop = await add_certificate(store, ann, "a1", label="laptop", expires_in=3600)
        await add_certificate(store, ann, "a2", label="desktop", expires_in=3600)
        await add_certificate(store, ann, "a3", label="old", expires_in=-60)
        await add_certificate(store, bob, "b1", label="bob's", expires_in=3600)
        sessions = SessionStore(store)
        refused = await sessions.record(
            "ann-laptop-cert",
            user_id=ann,
            authenticator="people-ca",
            client_address="192.0.2.1",
            expires_at=time.time() + 600,
            certificate=laptop,
            certificate_until=time.time() + 3600,
        )
        assert refused is None

        listed = json.loads(await ok("auth", "user", "certificates", "ann", "--json", env=cli_env))
        assert [(c["serial"], c["state"], c["label"]) for c in listed] == [
            ("a1", "live", "laptop"),
            ("a2", "live", "desktop"),
            ("a3", "expired", "old"),
        ]
        assert listed[0]["last_used_at"] is not None  # its session's creation
        assert listed[1]["last_used_at"] is None
        assert listed[0]["revoked_at"] is None
        assert listed[0]["revoked_by"] is None

        # Bad input changes nothing and says why: another's serial, an
        # expired one, both options.
        for args, status, said in (
            (("--revoke", "a2", "--revoke", "b1"), 3, "ann has no certificate 'b1'"),
            (("--revoke", "A2", "--revoke", "a3"), 3, "ann's certificate a3 expired at"),
            (("--revoke", "a1", "--revoke-all"), 2, "give it or --revoke"),
        ):
            code, _, stderr = await bugless(
                "auth", "user", "certificates", "ann", *args, env=cli_env
            )
            assert (code, "Traceback" in stderr) == (status, False), stderr
            assert said in stderr, stderr
        code, _, stderr = await bugless("auth", "user", "certificates", "nobody", env=cli_env)
        assert code == 3
        assert "no bugless user is called 'nobody'" in stderr
        states = await _states(store)
        assert states == {"a1": None, "a2": None, "a3": None, "b1": None}

        shown = await ok("auth", "user", "certificates", "ann", "--revoke", "0xA1", env=cli_env)
        assert "revoked 1 certificate(s) of ann" in shown
        assert "revoked with bugless auth user certificates" in shown
        assert (await _states(store))["a1"] == (REVOKED_BY, REVOKED_REASON)
        ended = await _session(store, "ann-laptop-cert")
        assert ended["revoked_at"] is not None  # its session ended with it
        assert ended["revoked_reason"] == "certificate a1 revoked"

        code, _, stderr = await bugless(
            "auth", "user", "certificates", "ann", "--revoke", "a1", env=cli_env
        )
        assert code == 3
        assert "ann's certificate a1 was revoked already, at" in stderr
        assert f"by {REVOKED_BY}: {REVOKED_REASON}" in stderr

        everything = json.loads(
            await ok("auth", "user", "certificates", "ann", "--revoke-all", "--json", env=cli_env)
        )
        assert everything["certificates_revoked"] == 1  # a2: a1 was already, a3 expired
        assert [(c["serial"], c["state"]) for c in everything["certificates"]] == [
            ("a1", "revoked"),
            ("a2", "revoked"),
            ("a3", "expired"),
        ]
        assert everything["certificates"][1]["revoked_reason"] == REVOKED_REASON
        assert await _states(store) == {
            "a1": (REVOKED_BY, REVOKED_REASON),
            "a2": (REVOKED_BY, REVOKED_REASON),
            "a3": None,
            "b1": None,  # another person's stays
        }
        again = json.loads(
            await ok("auth", "user", "certificates", "ann", "--revoke-all", "--json", env=cli_env)
        )
        assert again["certificates_revoked"] == 0
        bobs = await ok("auth", "user", "certificates", "bob", env=cli_env)
        assert bobs.startswith("b1  live ")
        users_after = await store.users_by_usernames(["ann"])
        assert not users_after[0].disabled  # revoking disables nothing
    finally:
        await store.close()


async def _states(store: IdentityStore) -> dict[str, tuple[str, str] | None]:
    rows = await store.run(
        lambda conn: conn.fetch(
            "SELECT serial, revoked_at, revoked_by, revoked_reason FROM people_certificates"
        ),
        transaction=False,
    )
    return {
        row["serial"]: None
        if row["revoked_at"] is None
        else (row["revoked_by"], row["revoked_reason"])
        for row in rows
    }


async def _session(store: IdentityStore, session_id: str) -> Any:
    return await store.run(
        lambda conn: conn.fetchrow(
            "SELECT revoked_at, revoked_reason FROM sessions WHERE session_id = $1", session_id
        ),
        transaction=False,
    )


async def test_an_operators_actions_on_a_person_are_logged_where_the_services_log(
    cli_env: dict[str, str],
) -> None:
    await ok("auth", "migrate", env=cli_env)
    await ok("auth", "user", "add", "ann", "--password-stdin", env=cli_env)
    store = await IdentityStore.open(
        cli_env["BUGLESS_AUTH_DATABASE_URL"], cli_env["BUGLESS_AUTH_SCHEMA"], pool_max_size=1
    )
    try:
        [user] = await store.users_by_usernames(["ann"])
        ann = user.user_id
        laptop = await add_certificate(store, ann, "a1", label="laptop", expires_in=3600)
        sessions = SessionStore(store)
        for session_id, certificate in (("ann-cert", laptop), ("ann-web", None)):
            refused = await sessions.record(
                session_id,
                user_id=ann,
                authenticator="people-ca" if certificate else "local",
                client_address="192.0.2.1",
                expires_at=time.time() + 600,
                certificate=certificate,
                certificate_until=time.time() + 3600 if certificate else None,
            )
            assert refused is None
    finally:
        await store.close()
    as_json = {**cli_env, "BUGLESS_LOG_JSON": "true"}

    code, stdout, stderr = await bugless(
        "auth", "user", "certificates", "ann", "--revoke", "a1", "--json", env=as_json
    )
    assert code == 0, stderr
    assert json.loads(stdout)["certificates_revoked"] == 1  # stdout holds the answer alone
    logged = [json.loads(line) for line in stderr.splitlines()]
    revoked = [line for line in logged if line.get("audit") == "person_certificate_revoked"]
    assert [(r["serial"], r["user_id"], r["by"]) for r in revoked] == [("a1", ann, REVOKED_BY)]
    assert f"ended 1 session(s) of {ann}: certificate a1 revoked" in [
        line["message"] for line in logged
    ]

    code, stdout, stderr = await bugless(
        "auth", "user", "sessions", "ann", "--end-all", "--json", env=as_json
    )
    assert code == 0, stderr
    assert json.loads(stdout)["sessions_ended"] == 1
    assert [json.loads(line)["message"] for line in stderr.splitlines()] == [
        f"ended 1 session(s) of {ann}: ended with bugless auth user sessions --end-all"
    ]

    # Text by default, at --log-level's level.
    code, _, stderr = await bugless(
        "auth", "user", "rename", "ann", "anna", "--log-level", "WARNING", env=cli_env
    )
    assert (code, stderr) == (0, "")
    code, stdout, stderr = await bugless("auth", "user", "rename", "anna", "ann", env=cli_env)
    assert code == 0, stderr
    assert f"user {ann} renamed from anna to ann with bugless auth user rename" in stderr
    assert "with bugless auth user rename" not in stdout
    code, _, stderr = await bugless("auth", "user", "disable", "ann", env=cli_env)
    assert code == 0, stderr
    assert f"ended 0 session(s) of {ann}: " in stderr


async def test_a_people_ca_session_is_listed_with_its_certificates_serial(
    cli_env: dict[str, str],
) -> None:
    await ok("auth", "migrate", env=cli_env)
    await ok("auth", "user", "add", "ann", "--password-stdin", env=cli_env)
    store = await IdentityStore.open(
        cli_env["BUGLESS_AUTH_DATABASE_URL"], cli_env["BUGLESS_AUTH_SCHEMA"], pool_max_size=1
    )
    try:
        [user] = await store.users_by_usernames(["ann"])
        laptop = await add_certificate(store, user.user_id, "0c1", label="laptop", expires_in=3600)
        sessions = SessionStore(store)
        for session_id, certificate in (("ann-web", None), ("ann-cert", laptop)):
            refused = await sessions.record(
                session_id,
                user_id=user.user_id,
                authenticator="people-ca" if certificate else "local",
                client_address="192.0.2.1",
                expires_at=time.time() + 600,
                certificate=certificate,
                certificate_until=time.time() + 3600 if certificate else None,
            )
            assert refused is None
            await asyncio.sleep(0.01)  # the certificate's session is the newest
    finally:
        await store.close()

    listed = json.loads(await ok("auth", "user", "sessions", "ann", "--json", env=cli_env))
    assert [(s["session_id"], s["certificate_serial"]) for s in listed] == [
        ("ann-cert", "0c1"),
        ("ann-web", None),
    ]
    cert_line, web_line = (await ok("auth", "user", "sessions", "ann", env=cli_env)).splitlines()
    assert cert_line.startswith("ann-cert  people-ca")
    assert cert_line.endswith("  certificate 0c1")
    assert "certificate" not in web_line
    # The serial is the one the certificates command lists and revokes.
    certificates = json.loads(
        await ok("auth", "user", "certificates", "ann", "--json", env=cli_env)
    )
    assert [c["serial"] for c in certificates] == ["0c1"]
