"""``bugless web serve``: its settings, and ``--port 0 --ready-file`` for real.

What a command line builds is read from a command generated from the same
declaration as the real one (it records the settings instead of serving).
The ready file is checked on the real command in a subprocess: it binds a
port the kernel picks, writes it, answers ``/healthz`` there and stops on
SIGTERM. Its backends are unreachable addresses: ``/healthz`` asks none.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

import click
from click.testing import CliRunner, Result

from bugless_core.clients import ServiceAddress
from bugless_core.settings import settings_command
from bugless_dev.processes import BUGLESS_COMMAND, clean_environment
from bugless_web.commands import ENV_PREFIX, web_group
from bugless_web.settings import WebSettings

KEY = "k" * 20
BACKENDS = ["--model", "127.0.0.1:1", "--auth", "127.0.0.1:2", "--insecure-local"]


def _built(args: Sequence[str], env: Mapping[str, str] | None = None) -> tuple[Result, WebSettings]:
    received: list[WebSettings] = []

    @click.command()
    @settings_command(WebSettings, env_prefix=ENV_PREFIX)
    def record(settings: WebSettings) -> None:
        received.append(settings)

    result = CliRunner().invoke(record, [*BACKENDS, *args], env=dict(env or {}))
    assert result.exit_code == 0, result.output
    return result, received[0]


def test_session_keys_come_from_repeated_flags_or_one_space_separated_variable() -> None:
    _, by_flags = _built(["--session-key", KEY, "--session-key", "o" * 16])
    _, by_env = _built([], {"BUGLESS_WEB_SESSION_KEYS": f"{KEY} {'o' * 16}"})
    assert by_flags.session_keys == by_env.session_keys == (KEY, "o" * 16)


def test_the_user_cache_is_set_in_seconds_and_its_former_names_still_work() -> None:
    plain, current = _built(["--session-key", KEY, "--user-cache-seconds", "3"])
    flag, by_flag = _built(["--session-key", KEY, "--user-cache-ttl", "4"])
    env, by_env = _built(["--session-key", KEY], {"BUGLESS_WEB_USER_CACHE_TTL": "6"})
    assert [s.user_cache_seconds for s in (current, by_flag, by_env)] == [3.0, 4.0, 6.0]
    assert "deprecated" not in plain.output
    assert "--user-cache-ttl is deprecated" in flag.stderr
    assert "use --user-cache-seconds [env BUGLESS_WEB_USER_CACHE_SECONDS]" in flag.stderr
    assert "BUGLESS_WEB_USER_CACHE_TTL is deprecated" in env.stderr


def test_the_default_page_size_is_a_flag_or_a_variable_and_must_be_1_to_200() -> None:
    _, default = _built(["--session-key", KEY])
    _, by_flag = _built(["--session-key", KEY, "--page-size", "10"])
    _, by_env = _built(["--session-key", KEY], {"BUGLESS_WEB_PAGE_SIZE": "20"})
    assert [s.page_size for s in (default, by_flag, by_env)] == [50, 10, 20]
    for bad in ("0", "201"):
        result = CliRunner().invoke(
            web_group, ["serve", *BACKENDS, "--session-key", KEY, "--page-size", bad]
        )
        assert result.exit_code == 2, result.output
        assert f"--page-size {bad}: give 1 to 200 issues per page" in result.output


def test_the_tls_files_reach_both_backend_addresses(tmp_path: Path) -> None:
    ca, cert, key = (tmp_path / name for name in ("ca.pem", "cert.pem", "key.pem"))
    for path in (ca, cert, key):
        path.write_text("not read by the settings\n")
    _, settings = _built(
        ["--session-key", KEY, "--tls-ca", str(ca), "--tls-cert", str(cert), "--tls-key", str(key)]
    )
    assert settings.model == ServiceAddress("127.0.0.1", 1, ca=ca, cert=cert, key=key)
    assert settings.auth == ServiceAddress("127.0.0.1", 2, ca=ca, cert=cert, key=key)


def test_a_client_certificate_without_the_backends_ca_is_a_usage_error(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x\n")
    result = CliRunner().invoke(
        web_group, ["serve", *BACKENDS, "--session-key", KEY, "--tls-cert", str(cert)]
    )
    assert result.exit_code == 2
    assert "--tls-cert/--tls-key need --tls-ca" in result.output


def test_serving_without_a_session_key_is_a_usage_error() -> None:
    result = CliRunner().invoke(
        web_group, ["serve", *BACKENDS], env={"BUGLESS_WEB_SESSION_KEYS": ""}
    )
    assert result.exit_code == 2
    assert "--session-key is required (or set BUGLESS_WEB_SESSION_KEYS)" in result.output


def test_with_port_0_the_web_tier_writes_the_port_it_listens_on_to_the_ready_file(
    tmp_path: Path,
) -> None:
    ready = tmp_path / "web.json"
    log = tmp_path / "web.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                *BUGLESS_COMMAND, "web", "serve", *BACKENDS,
                "--port", "0", "--ready-file", str(ready), "--drain-seconds", "0",
            ],
            env={**clean_environment(), "BUGLESS_WEB_SESSION_KEYS": KEY},
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        written = json.loads(ready.read_text())
        assert written["pid"] == process.pid
        assert written["port"] > 0
        url = f"http://127.0.0.1:{written['port']}/healthz"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert process.returncode == 0, log.read_text()
    assert f"serving HTTP on 127.0.0.1:{written['port']}" in log.read_text()


def test_plaintext_to_the_backends_needs_insecure_local() -> None:
    result = CliRunner().invoke(
        web_group,
        ["serve", "--model", "127.0.0.1:1", "--auth", "127.0.0.1:2", "--session-key", KEY],
    )
    assert result.exit_code == 2
    assert "mutual TLS to the model service is required" in result.output
