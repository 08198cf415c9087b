"""``bugless auth``'s help and light commands do not load the Authenticator's server stack.

Each case runs the real entry point in a fresh interpreter (every bugless
package installed) and reads ``sys.modules`` after it: showing a command's
help needs its settings, never the store's driver, password hashing, token
keys or the gRPC server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

#: Runs ``bugless ARGV`` in-process, then prints the loaded modules as JSON on stderr.
_PROBE = """
import json, sys
from bugless_core.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""

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


def _modules_after(*argv: str) -> tuple[set[str], str]:
    """The modules loaded after ``bugless ARGV`` in a fresh interpreter, and its output."""
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv],
        capture_output=True,
        text=True,
        timeout=180,  # a CLI process starting on a loaded CI machine
        check=True,
    )
    loaded = json.loads(result.stderr.strip().splitlines()[-1])
    assert isinstance(loaded, list)
    return set(loaded), result.stdout


def _present(loaded: set[str], names: tuple[str, ...]) -> list[str]:
    """Those of ``names`` loaded, themselves or a submodule."""
    return sorted(n for n in names if n in loaded or any(m.startswith(f"{n}.") for m in loaded))


def test_the_groups_help_imports_no_command_module() -> None:
    loaded, shown = _modules_after("auth", "--help")
    assert "serve" in shown
    assert "user" in shown
    assert _present(loaded, SERVER_STACK) == []
    commands = ("bugless_auth.serve_commands", "bugless_auth.user_commands", "asyncio")
    assert _present(loaded, commands) == []


@pytest.mark.parametrize(
    "argv",
    [
        ("auth", "serve", "--help"),
        ("auth", "migrate", "--help"),
        ("auth", "user", "--help"),
        ("auth", "user", "add", "--help"),
        ("auth", "user", "disable", "--help"),
    ],
    ids=" ".join,
)
def test_a_commands_help_imports_its_settings_and_no_server_stack(argv: tuple[str, ...]) -> None:
    loaded, shown = _modules_after(*argv)
    assert "--help" in shown
    assert "bugless_auth.settings" in loaded
    assert _present(loaded, SERVER_STACK) == []
    assert _present(loaded, LEASE_STACK) == []


def test_a_schema_name_is_refused_while_parsing_without_the_migration_engine() -> None:
    """The settings check the schema with ``quote_schema`` before anything connects."""
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, "auth", "migrate", "--schema", "Bad-Name"],
        capture_output=True,
        text=True,
        env={**os.environ, "BUGLESS_AUTH_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"},
        timeout=180,  # a CLI process starting on a loaded CI machine
        check=True,
    )
    assert "'Bad-Name' is not a plain lower-case identifier" in result.stderr
    loaded = set(json.loads(result.stderr.strip().splitlines()[-1]))
    assert "bugless_core.sql_names" in loaded
    assert _present(loaded, LEASE_STACK) == []
    assert _present(loaded, SERVER_STACK) == []


def test_keygen_prints_a_key_without_the_store() -> None:
    loaded, shown = _modules_after("auth", "keygen")
    assert shown.startswith("-----BEGIN PRIVATE KEY-----")
    stack = ("asyncpg", "argon2", "bugless_auth.store", "bugless_auth.runner")
    assert _present(loaded, stack) == []
