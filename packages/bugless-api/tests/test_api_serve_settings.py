"""``bugless api serve``'s settings: flags, variables, renamed durations and backend TLS.

Usage errors run the real command in-process (click's CliRunner): each is
refused before anything listens. What a valid command line builds is read
from a command generated from the same declaration, which records the
settings object instead of serving.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import click
import pytest
import trustme
from click.testing import CliRunner, Result

from bugless_api.cli.serve import DEFAULT_API_PORT, ENV_PREFIX, api_group
from bugless_api.settings import ApiSettings
from bugless_core.clients import ServiceAddress
from bugless_core.settings import settings_command


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """Real PEM files: the settings read and check them when the command starts."""
    ca, service_ca = trustme.CA(), trustme.CA()
    leaf, service_leaf = ca.issue_cert("api.example"), service_ca.issue_cert("api.example")
    contents = {
        "cert": leaf.cert_chain_pems[0].bytes(),
        "key": leaf.private_key_pem.bytes(),
        "ca": ca.cert_pem.bytes(),
        "service_ca": service_ca.cert_pem.bytes(),
        "service_cert": service_leaf.cert_chain_pems[0].bytes(),
        "service_key": service_leaf.private_key_pem.bytes(),
    }
    paths = {name: tmp_path / f"{name}.pem" for name in contents}
    for name, path in paths.items():
        path.write_bytes(contents[name])
    return paths


def _tls(files: Mapping[str, Path]) -> list[str]:
    return [
        "--tls-cert", str(files["cert"]),
        "--tls-key", str(files["key"]),
        "--client-ca", str(files["ca"]),
    ]  # fmt: skip


def _built(args: Sequence[str], env: Mapping[str, str] | None = None) -> tuple[Result, ApiSettings]:
    received: list[ApiSettings] = []

    @click.command()
    @settings_command(ApiSettings, env_prefix=ENV_PREFIX, defaults={"grpc.port": DEFAULT_API_PORT})
    def record(settings: ApiSettings) -> None:
        received.append(settings)

    result = CliRunner().invoke(
        record,
        ["--model", "model:1", "--auth", "auth:2", "--insecure-local", *args],
        env=dict(env or {}),
    )
    assert result.exit_code == 0, result.output
    return result, received[0]


def _serve(*args: str) -> Result:
    return CliRunner().invoke(api_group, ["serve", "--model", "m:1", "--auth", "a:2", *args])


def test_the_defaults_are_the_documented_ones(files: dict[str, Path]) -> None:
    _, settings = _built(_tls(files))
    assert (settings.grpc.port, settings.identity_ttl_seconds, settings.user_cache_seconds) == (
        DEFAULT_API_PORT,
        300.0,
        5.0,
    )
    assert (settings.backend_timeout_seconds, settings.batch_reads) == (30.0, True)
    assert (settings.rate_limit.rate, settings.rate_limit.burst) == (50.0, 100)
    assert settings.model == ServiceAddress("model", 1)


def test_durations_are_set_by_their_seconds_names(files: dict[str, Path]) -> None:
    result, settings = _built(
        [*_tls(files), "--identity-ttl-seconds", "7", "--backend-timeout-seconds", "9"],
        {"BUGLESS_API_USER_CACHE_SECONDS": "0"},
    )
    assert (settings.identity_ttl_seconds, settings.user_cache_seconds) == (7.0, 0.0)
    assert settings.backend_timeout_seconds == 9.0
    assert "deprecated" not in result.output


def test_the_former_duration_names_still_work_for_one_release_with_a_warning(
    files: dict[str, Path],
) -> None:
    result, settings = _built(
        [*_tls(files), "--identity-ttl", "7", "--user-cache-ttl", "2"],
        {"BUGLESS_API_BACKEND_TIMEOUT": "9"},
    )
    assert (settings.identity_ttl_seconds, settings.user_cache_seconds) == (7.0, 2.0)
    assert settings.backend_timeout_seconds == 9.0
    assert "--identity-ttl is deprecated" in result.stderr
    assert "use --identity-ttl-seconds [env BUGLESS_API_IDENTITY_TTL_SECONDS]" in result.stderr
    assert "BUGLESS_API_BACKEND_TIMEOUT is deprecated" in result.stderr


def test_the_service_tls_files_reach_both_backend_addresses(files: dict[str, Path]) -> None:
    _, settings = _built(
        _tls(files),
        {
            "BUGLESS_API_SERVICE_CA": str(files["service_ca"]),
            "BUGLESS_API_SERVICE_CERT": str(files["service_cert"]),
            "BUGLESS_API_SERVICE_KEY": str(files["service_key"]),
        },
    )
    for address in (settings.model, settings.auth):
        assert (address.ca, address.cert, address.key) == (
            files["service_ca"],
            files["service_cert"],
            files["service_key"],
        )


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        ("--tls-cert", "tls_cert and tls_key go together"),
        ("--client-ca", "mutual TLS is required between bugless services"),
    ],
)
def test_the_api_refuses_to_serve_without_tls_and_client_certificates(
    files: dict[str, Path], drop: str, message: str
) -> None:
    args = _tls(files)
    at = args.index(drop)
    result = _serve(*args[:at], *args[at + 2 :])
    assert result.exit_code == 2
    assert message in result.output


def test_without_any_tls_the_first_missing_file_is_named() -> None:
    result = _serve()
    assert result.exit_code == 2
    assert "mutual TLS is required between bugless services" in result.output


def test_insecure_local_never_makes_the_api_serve_plaintext_to_bots() -> None:
    result = _serve("--insecure-local")
    assert result.exit_code == 2
    assert "--tls-cert is required: the API serves TLS only" in result.output


def test_a_client_certificate_to_the_backends_needs_their_ca(files: dict[str, Path]) -> None:
    result = _serve(*_tls(files), "--service-cert", str(files["service_cert"]))
    assert result.exit_code == 2
    assert "--service-cert/--service-key need --service-ca" in result.output


def test_a_backend_address_that_is_not_host_port_is_a_usage_error(
    files: dict[str, Path],
) -> None:
    result = CliRunner().invoke(
        api_group, ["serve", "--model", "nowhere", "--auth", "a:2", *_tls(files)]
    )
    assert result.exit_code == 2
    assert "--model: 'nowhere' is not valid: 'nowhere' is not host:port" in result.output


def test_plaintext_to_the_backends_needs_insecure_local(files: dict[str, Path]) -> None:
    result = _serve(*_tls(files))
    assert result.exit_code == 2
    assert "mutual TLS to the model service is required" in result.output
