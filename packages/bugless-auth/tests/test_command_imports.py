"""``bugless auth``'s help and light commands do not load the Authenticator's server stack.

Each case runs the real entry point in a fresh interpreter (every bugless
package installed) and reads ``sys.modules`` after it: showing a command's
help needs its settings, never the store's driver, password hashing, token
keys or the gRPC server.
"""

from __future__ import annotations

import os

import pytest

from bugless_auth.sessions import LAST_USED_GRANULARITY_SECONDS
from bugless_auth.user_commands import _minutes_or_seconds
from bugless_testing.import_boundary import loaded_among, modules_after_command

#: The server stack: the database driver, password hashing, token keys, the store, the server.
SERVER_STACK = (
    "asyncpg",
    "argon2",
    "cryptography",
    "joserfc",
    "google.protobuf",
    "bugless_auth.store",
    "bugless_auth.passwords",
    "bugless_auth.tokens",
    "bugless_auth.service",
    "bugless_auth.runner",
)

#: The migration engine's lease machinery: an event loop and metrics, for no help text.
LEASE_STACK = ("asyncio", "prometheus_client", "bugless_core.leases", "bugless_core.migrations")


def test_the_groups_help_imports_no_command_module() -> None:
    loaded, shown, _ = modules_after_command("auth", "--help")
    assert "serve" in shown
    assert "user" in shown
    assert loaded_among(loaded, SERVER_STACK) == []
    commands = (
        "bugless_auth.serve_commands",
        "bugless_auth.user_commands",
        "bugless_auth.bot_commands",
        "asyncio",
    )
    assert loaded_among(loaded, commands) == []


def test_the_bot_commands_help_signs_nothing_and_loads_no_server_stack() -> None:
    loaded, shown, _ = modules_after_command("auth", "bot", "issue", "--help")
    assert "--mapping-file" in shown
    assert loaded_among(loaded, ("bugless_auth.bot_certificates", "cryptography.x509")) == []
    assert loaded_among(loaded, SERVER_STACK) == []


@pytest.mark.parametrize(
    "argv",
    [
        ("auth", "serve", "--help"),
        ("auth", "migrate", "--help"),
        ("auth", "user", "--help"),
        ("auth", "user", "add", "--help"),
        ("auth", "user", "disable", "--help"),
        ("auth", "user", "sessions", "--help"),
    ],
    ids=" ".join,
)
def test_a_commands_help_imports_its_settings_and_no_server_stack(argv: tuple[str, ...]) -> None:
    loaded, shown, _ = modules_after_command(*argv)
    assert "--help" in shown
    assert "bugless_auth.settings" in loaded
    assert loaded_among(loaded, SERVER_STACK) == []
    assert loaded_among(loaded, LEASE_STACK) == []


def test_a_schema_name_is_refused_while_parsing_without_the_migration_engine() -> None:
    """The settings check the schema with ``quote_schema`` before anything connects."""
    loaded, _, said = modules_after_command(
        "auth",
        "migrate",
        "--schema",
        "Bad-Name",
        env={**os.environ, "BUGLESS_AUTH_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"},
    )
    assert "'Bad-Name' is not a plain lower-case identifier" in said
    assert "bugless_core.sql_names" in loaded
    assert loaded_among(loaded, LEASE_STACK) == []
    assert loaded_among(loaded, SERVER_STACK) == []


def test_keygen_prints_a_key_without_the_store() -> None:
    loaded, shown, _ = modules_after_command("auth", "keygen")
    assert shown.startswith("-----BEGIN PRIVATE KEY-----")
    stack = ("asyncpg", "argon2", "bugless_auth.store", "bugless_auth.runner")
    assert loaded_among(loaded, stack) == []


def test_the_sessions_help_states_the_last_use_figure_the_sessions_are_recorded_with() -> None:
    """``auth user sessions --help`` says how far behind a last use may be from
    ``LAST_USED_GRANULARITY_SECONDS`` itself (it said "5 minutes" as a fixed
    figure), and still loads no driver to say it."""
    loaded, shown, _ = modules_after_command("auth", "user", "sessions", "--help")
    figure = _minutes_or_seconds(LAST_USED_GRANULARITY_SECONDS)
    assert f"to within {figure}," in " ".join(shown.split())
    assert loaded_among(loaded, SERVER_STACK) == []
    assert (_minutes_or_seconds(300), _minutes_or_seconds(60)) == ("5 minutes", "1 minute")
    assert _minutes_or_seconds(90) == "90 seconds"
