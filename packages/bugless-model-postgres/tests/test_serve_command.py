"""`bugless model migrate` and `bugless model serve` as an operator runs them.

Real processes, a real PostgreSQL, and grpcurl (through server reflection, no
.proto files) creating and fetching an issue.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import pytest

from bugless_dev.processes import BUGLESS_COMMAND

if TYPE_CHECKING:
    from bugless_testing.postgres import ThrowawayPostgres

GRPCURL = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")
CALLER = {"user_id": "u-ops", "groups": ["eng"]}


def _grpcurl(port: int, *args: str, data: object = None) -> subprocess.CompletedProcess[str]:
    flags = ["-d", json.dumps(data)] if data is not None else []
    return subprocess.run(
        [GRPCURL, "-plaintext", *flags, f"127.0.0.1:{port}", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.fixture(scope="module")
def database_url(postgres_server: ThrowawayPostgres) -> str:
    return postgres_server.create_database("serve_command")


@pytest.fixture(scope="module")
def served_model(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    env = {**os.environ, "BUGLESS_DATABASE_URL": database_url}
    migrate = subprocess.run(
        [*BUGLESS_COMMAND, "model", "migrate"], env=env, capture_output=True, text=True, check=False
    )
    assert migrate.returncode == 0, migrate.stderr
    assert "is at version" in migrate.stdout
    assert migrate.stdout.rstrip().endswith("(bugless-model-postgres)"), migrate.stdout
    ready_file = tmp_path_factory.mktemp("serve") / "ready.json"
    env["BUGLESS_PAGE_TOKEN_SECRET"] = "serve-command-test-secret"
    # --port 0 and --ready-file: the server binds a port itself and reports it,
    # so no other process can take the port between choosing and binding.
    # Plaintext on loopback, so that grpcurl needs no certificate; such a
    # start always says so (checked when it stops).
    serve = ["model", "serve", "--port", "0", "--ready-file", str(ready_file), "--insecure-local"]
    process = subprocess.Popen(
        [*BUGLESS_COMMAND, *serve, "--drain-seconds", "0.2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Generous: on a loaded CI machine a cold interpreter start alone can take long.
        deadline = time.monotonic() + 120
        port = 0
        while time.monotonic() < deadline:
            if not port and ready_file.exists() and ready_file.read_text().endswith("\n"):
                port = int(json.loads(ready_file.read_text())["port"])
            if port and '"SERVING"' in _grpcurl(port, "grpc.health.v1.Health/Check").stdout:
                break
            assert process.poll() is None, process.communicate()[1]
            time.sleep(0.2)
        else:
            pytest.fail("bugless model serve did not become SERVING within 120 s")
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 0, stderr
        assert "--insecure-local" in stderr


def test_migrate_is_idempotent(database_url: str, served_model: int) -> None:
    env = {**os.environ, "BUGLESS_DATABASE_URL": database_url}
    again = subprocess.run(
        [*BUGLESS_COMMAND, "model", "migrate"], env=env, capture_output=True, text=True, check=False
    )
    assert again.returncode == 0, again.stderr


def test_grpcurl_lists_and_describes_the_model(served_model: int) -> None:
    listing = _grpcurl(served_model, "list")
    assert "bugless.v1.Model" in listing.stdout.split()
    described = _grpcurl(served_model, "describe", "bugless.v1.Model.CreateIssue")
    assert "CreateIssueRequest" in described.stdout


def test_grpcurl_creates_and_fetches_an_issue(served_model: int) -> None:
    component = _grpcurl(
        served_model,
        "bugless.v1.Model/CreateComponent",
        data={"caller": CALLER, "name": "ServeCommand"},
    )
    assert component.returncode == 0, component.stderr
    component_id = json.loads(component.stdout)["id"]
    created = _grpcurl(
        served_model,
        "bugless.v1.Model/CreateIssue",
        data={
            "caller": CALLER,
            "fields": {"title": "grpcurl made me", "componentId": component_id},
            "description": "created through reflection",
        },
    )
    assert created.returncode == 0, created.stderr
    issue = json.loads(created.stdout)
    fetched = _grpcurl(
        served_model,
        "bugless.v1.Model/GetIssue",
        data={"caller": CALLER, "issueId": issue["id"]},
    )
    assert fetched.returncode == 0, fetched.stderr
    body = json.loads(fetched.stdout)
    assert body["title"] == "grpcurl made me"
    assert body["status"] == "STATUS_NEW"
    assert body["version"] == "1"


def test_bad_input_is_a_clear_status_not_a_traceback(served_model: int) -> None:
    result = _grpcurl(
        served_model,
        "bugless.v1.Model/CreateIssue",
        data={"caller": CALLER, "fields": {"title": " ", "componentId": "1"}},
    )
    assert result.returncode != 0
    assert "InvalidArgument" in result.stderr
    assert "fields.title: required and must not be blank" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_backend_name_is_a_usage_error_listing_installed_ones() -> None:
    result = subprocess.run(
        [
            *BUGLESS_COMMAND,
            "model",
            "migrate",
            "--model",
            "oracle",
            "--database-url",
            "postgresql://x/y",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "unknown model backend 'oracle'" in result.stderr
    assert "postgres" in result.stderr


def test_a_database_url_with_credentials_the_database_refuses_is_one_line_not_a_traceback(
    database_url: str,
) -> None:
    """A wrong user or password (SQLSTATE class 28): migrate and serve ended in a traceback."""
    parts = urlsplit(database_url)
    refused = urlunsplit(parts._replace(netloc=f"no_such_role:pw@{parts.hostname}:{parts.port}"))
    env = {**os.environ, "BUGLESS_PAGE_TOKEN_SECRET": "serve-command-test-secret"}
    for command in (
        ["model", "migrate"],
        ["model", "serve", "--port", "0", "--insecure-local", "--drain-seconds", "0.2"],
    ):
        result = subprocess.run(
            [*BUGLESS_COMMAND, *command, "--database-url", refused],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr, result.stderr
        assert "error: the database refused the connection:" in result.stderr
        assert '"no_such_role"' in result.stderr
        assert "check the user name and password of the database URL" in result.stderr
