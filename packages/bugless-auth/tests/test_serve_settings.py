"""``bugless auth serve``'s settings: what the flags and variables build, and what they refuse.

The real command runs in-process (click's CliRunner) with the real plugins;
every case here is refused before anything listens, so no server starts. The
serving path itself is driven end to end by test_cli.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme
from auth_support import KeyFiles
from click.testing import CliRunner, Result

import bugless_auth.plugin
from bugless_auth.commands import auth_group
from bugless_auth.serve_commands import with_environment_options
from bugless_auth.settings import (
    AuthSettings,
    options_from_environment,
    parse_authenticator_options,
)
from bugless_core.plugins import load_plugins


def _serve(key_files: KeyFiles | None, *args: str) -> Result:
    plugins = load_plugins(entry_points=False, extra=[bugless_auth.plugin])
    keys = ["--token-key-file", str(key_files.first)] if key_files else []
    return CliRunner().invoke(
        auth_group,
        # --insecure-local: these tests are about the other settings; service
        # trust (mutual TLS, required since #14) is tested in bugless-dev's trust tests.
        [
            "serve",
            "--insecure-local",
            "--database-url",
            "postgresql://nobody@127.0.0.1:1/none",
            *keys,
            *args,
        ],
        obj=plugins,
        env={"BUGLESS_AUTH_TOKEN_KEY_FILES": "", "BUGLESS_AUTH_POLICY": ""},
    )


def test_a_policy_that_does_not_parse_is_a_usage_error_naming_policy(key_files: KeyFiles) -> None:
    result = _serve(key_files, "--policy", '{"admins": "admin"}')
    assert result.exit_code == 2
    assert "--policy:" in result.output
    assert "'admins' must map to a list of permission names" in result.output


def test_a_policy_file_that_is_missing_is_a_usage_error(
    key_files: KeyFiles, tmp_path: Path
) -> None:
    result = _serve(key_files, "--policy", str(tmp_path / "absent.toml"))
    assert result.exit_code == 2
    assert "--policy:" in result.output
    assert "absent.toml" in result.output


def test_a_policy_file_that_is_not_utf8_names_the_file_and_what_it_must_be(
    key_files: KeyFiles, tmp_path: Path
) -> None:
    """A policy saved as Latin-1 used to be only the decoder's "can't decode byte 0xe9"."""
    path = tmp_path / "policy.toml"
    path.write_bytes('triagers = ["create_component"]  # équipe\n'.encode("latin-1"))
    result = _serve(key_files, "--policy", str(path))
    assert result.exit_code == 2
    assert (
        f"--policy: {str(path)!r} is not valid: policy file {path}: not UTF-8 text "
        "(invalid continuation byte at byte 35); a policy file must be UTF-8 JSON or TOML"
    ) in result.output
    assert "codec" not in result.output


def test_an_authenticator_option_without_name_and_key_is_refused(key_files: KeyFiles) -> None:
    result = _serve(key_files, "--authenticator-option", "mapping_file=/x")
    assert result.exit_code == 2
    assert "--authenticator-option: 'mapping_file=/x': use NAME.KEY=VALUE" in result.output


def test_serving_without_a_token_key_is_a_usage_error() -> None:
    result = _serve(None)
    assert result.exit_code == 2
    assert "--token-key-file is required to serve" in result.output


def test_an_unknown_authenticator_is_a_usage_error_listing_the_installed(
    key_files: KeyFiles,
) -> None:
    result = _serve(key_files, "--authenticator", "local,lcoal")
    assert result.exit_code == 2
    assert "unknown authenticator backend 'lcoal'" in result.output


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--throttle-user-limit", "0", "per_user_limit (--throttle-user-limit) must be at least 1"),
        ("--argon2-time-cost", "0", "time_cost (--argon2-time-cost) must be at least 1"),
        ("--token-ttl-seconds", "0.5", "token_ttl_seconds must be at least 1"),
        ("--cache-max-entries", "0", "cache_max_entries must be at least 1"),
        ("--schema", "no spaces", "schema: 'no spaces' is not a plain lower-case identifier"),
    ],
)
def test_out_of_range_values_are_usage_errors(
    key_files: KeyFiles, flag: str, value: str, message: str
) -> None:
    result = _serve(key_files, flag, value)
    assert result.exit_code == 2
    assert message in result.output


def test_backend_options_come_from_variables_of_enabled_backends_and_flags_win() -> None:
    settings = AuthSettings(
        database_url="postgresql://x",
        authenticators=("local", "tls"),
        authenticator_options=parse_authenticator_options(
            ["tls.mapping_file=/flag.toml", "tls.Extra=e"]
        ),
    )
    environ = {
        "BUGLESS_AUTH_TLS_MAPPING_FILE": "/env.toml",
        "BUGLESS_AUTH_TLS_CA_FILE": "/ca.pem",
        "BUGLESS_AUTH_LDAP_URLS": "ldap://not-enabled",
    }
    merged = with_environment_options(settings, environ, options_from_environment)
    assert merged.authenticator_options == {
        "tls": {"mapping_file": "/flag.toml", "ca_file": "/ca.pem", "extra": "e"}
    }


def test_serving_without_mutual_tls_needs_insecure_local(key_files: KeyFiles) -> None:
    plugins = load_plugins(entry_points=False, extra=[bugless_auth.plugin])
    result = CliRunner().invoke(
        auth_group,
        [
            "serve",
            "--token-key-file",
            str(key_files.first),
            "--database-url",
            "postgresql://nobody@127.0.0.1:1/none",
        ],
        obj=plugins,
        env={"BUGLESS_AUTH_TOKEN_KEY_FILES": "", "BUGLESS_AUTH_POLICY": ""},
    )
    assert result.exit_code == 2
    assert "mutual TLS is required between bugless services" in result.output


def test_an_assertion_lifetime_out_of_range_is_a_usage_error(key_files: KeyFiles) -> None:
    result = _serve(key_files, "--assertion-ttl-seconds", "5")
    assert result.exit_code == 2
    assert "assertion_ttl_seconds must be between 10 and 3600" in result.output


def test_an_earlier_people_ca_without_a_current_one_is_a_usage_error(
    key_files: KeyFiles, tmp_path: Path
) -> None:
    previous = tmp_path / "people-ca-2025.pem"
    previous.write_text("a certificate")
    result = _serve(key_files, "--people-ca-previous-cert", str(previous))
    assert result.exit_code == 2
    assert "--people-ca-previous-cert needs --people-ca-cert and --people-ca-key" in result.output


def test_a_tls_ca_file_with_no_certificate_is_a_usage_error_saying_what_it_must_hold(
    key_files: KeyFiles, tmp_path: Path
) -> None:
    """Refused before anything connects, naming the flag and what the file must hold."""
    mapping = tmp_path / "certificates.toml"
    mapping.write_text('["deploy-bot"]\nusername = "deploy-bot"\n')
    ca_file = tmp_path / "bots-ca.pem"
    ca_file.write_text("# the bots' CAs go here\n")
    result = _serve(
        key_files,
        "--authenticator",
        "local,tls",
        "--authenticator-option",
        f"tls.mapping_file={mapping}",
        "--authenticator-option",
        f"tls.ca_file={ca_file}",
    )
    assert result.exit_code == 2
    output = " ".join(result.output.split())
    assert "--authenticator-option tls.ca_file" in output
    assert "not a PEM certificate: no BEGIN CERTIFICATE block" in output
    assert "(or of each CA, one after the other, while one replaces another)" in output
    assert "Traceback" not in result.output


def test_a_tls_ca_file_holding_a_leaf_is_a_usage_error_naming_the_file_and_the_certificate(
    key_files: KeyFiles, tmp_path: Path
) -> None:
    """A bot's certificate given as the CA (CA:FALSE) stops the start, saying which and why."""
    mapping = tmp_path / "certificates.toml"
    mapping.write_text('["deploy-bot"]\nusername = "deploy-bot"\n')
    ca_file = tmp_path / "bots-ca.pem"
    leaf = trustme.CA().issue_cert("deploy-bot.invalid", common_name="deploy-bot")
    ca_file.write_bytes(leaf.cert_chain_pems[0].bytes())
    result = _serve(
        key_files,
        "--authenticator",
        "local,tls",
        "--authenticator-option",
        f"tls.mapping_file={mapping}",
        "--authenticator-option",
        f"tls.ca_file={ca_file}",
    )
    assert result.exit_code == 2
    output = " ".join(result.output.split())
    assert "--authenticator-option tls.ca_file" in output
    assert str(ca_file) in output
    assert "certificate 1 of 1 (subject CN=deploy-bot," in output
    assert "is not a CA: its basicConstraints say CA:FALSE" in output
    assert "Traceback" not in result.output
