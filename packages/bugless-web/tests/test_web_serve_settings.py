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
import pytest
import trustme
from click.testing import CliRunner, Result

from bugless_core.clients import ServiceAddress
from bugless_core.networks import parse_networks
from bugless_core.settings import settings_command
from bugless_dev.processes import BUGLESS_COMMAND, clean_environment
from bugless_web.commands import ENV_PREFIX, web_group
from bugless_web.server import forwarded_allow_ips
from bugless_web.settings import DEV_TRUSTED_PROXIES, WebSettings

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


def test_imported_sources_come_from_repeated_flags_or_one_variable_as_base_urls() -> None:
    trac, github = "https://Trac.example.org", "https://github.com/acme/"
    _, by_flags = _built(
        ["--session-key", KEY, "--imported-source", trac, "--imported-source", github]
    )
    _, by_env = _built(["--session-key", KEY], {"BUGLESS_WEB_IMPORTED_SOURCES": f"{trac} {github}"})
    wanted = ("https://trac.example.org/", "https://github.com/acme/")
    assert by_flags.imported_sources == by_env.imported_sources == wanted
    refused = CliRunner().invoke(
        web_group, ["serve", *BACKENDS, "--session-key", KEY, "--imported-source", "trac.example"]
    )
    assert refused.exit_code == 2
    assert "--imported-source 'trac.example': give the old tracker's http(s) base URL" in (
        refused.output
    )


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
    authority = trustme.CA()  # real files: the settings read and check them
    leaf = authority.issue_cert("web.example")
    authority.cert_pem.write_to_path(str(ca))
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
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


def test_no_proxy_is_trusted_outside_dev_and_loopback_is_in_dev() -> None:
    """By default a peer's own address is the client; ``--dev`` believes a local proxy."""
    _, production = _built(["--session-key", KEY])
    _, dev = _built(["--session-key", KEY, "--dev"])
    assert production.trusted_proxies is None
    assert production.proxy_networks == ()
    assert forwarded_allow_ips(production.proxy_networks) == []
    assert dev.proxy_networks == parse_networks(DEV_TRUSTED_PROXIES)
    # Given, the setting replaces dev's loopback.
    _, dev_given = _built(["--session-key", KEY, "--dev", "--trusted-proxy", "192.0.2.0/24"])
    assert dev_given.proxy_networks == parse_networks(["192.0.2.0/24"])


def test_trusted_proxies_come_from_repeated_flags_or_one_comma_separated_variable() -> None:
    networks = ("10.244.0.0/16", "192.0.2.7/32", "fd00:10:244::/56", "2001:db8::1/128")
    flags = ["10.244.0.0/16", "192.0.2.7", "fd00:10:244::/56,2001:db8::1"]
    _, by_flags = _built(
        ["--session-key", KEY, *(arg for flag in flags for arg in ("--trusted-proxy", flag))]
    )
    env = {"BUGLESS_WEB_TRUSTED_PROXIES": "10.244.0.0/16, 192.0.2.7,fd00:10:244::/56 2001:db8::1"}
    _, by_env = _built(["--session-key", KEY], env)
    assert by_flags.trusted_proxies == by_env.trusted_proxies == networks
    # An empty variable (a chart value left empty) is no setting: the default applies.
    _, empty = _built(["--session-key", KEY], {"BUGLESS_WEB_TRUSTED_PROXIES": ""})
    assert empty.trusted_proxies is None


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("ingress-nginx", "'ingress-nginx' is not a network such as 10.0.0.0/8"),
        ("10.244.0.0/33", "'10.244.0.0/33' is not a network"),
        ("300.1.2.3", "'300.1.2.3' is not a network"),
        ("*", "'*' is not a network"),
        ("10.244.1.7/16", "'10.244.1.7/16' has host bits set: give the network (10.244.0.0/16)"),
        ("fd00::1/64", "'fd00::1/64' has host bits set: give the network (fd00::/64)"),
    ],
)
def test_a_value_that_is_not_a_proxy_network_fails_start_up_naming_it(
    value: str, said: str
) -> None:
    """Refused before serving: uvicorn would have kept it as a name that never matches."""
    for args, env in (
        (["--trusted-proxy", value], {}),
        ([], {"BUGLESS_WEB_TRUSTED_PROXIES": f"10.0.0.0/8, {value}"}),
    ):
        result = CliRunner().invoke(
            web_group, ["serve", *BACKENDS, "--session-key", KEY, *args], env=env
        )
        assert result.exit_code == 2, result.output
        assert "--trusted-proxy:" in result.output
        assert said in " ".join(result.output.split())
    with pytest.raises(ValueError, match=r"--trusted-proxy: .* is not a network|host bits"):
        WebSettings(
            model=ServiceAddress("127.0.0.1", 1),
            auth=ServiceAddress("127.0.0.1", 2),
            session_keys=(KEY,),
            insecure_local=True,
            trusted_proxies=(value,),
        )


def test_an_ipv4_proxy_is_also_trusted_in_its_ipv4_mapped_form() -> None:
    """A replica listening on ``::`` sees an IPv4 proxy as ``::ffff:a.b.c.d``."""
    allowed = forwarded_allow_ips(parse_networks(["10.244.0.0/16 192.0.2.7 fd00::/8"]))
    assert allowed == [
        "10.244.0.0/16",
        "::ffff:af4:0/112",
        "192.0.2.7/32",
        "::ffff:c000:207/128",
        "fd00::/8",
    ]


def test_the_apis_public_address_and_ca_hint_come_from_flags_or_variables() -> None:
    """What the API access page's ``bugless login`` command shows; unset, placeholders."""
    _, unset = _built(["--session-key", KEY])
    assert (unset.api_public_address, unset.api_ca_hint) == ("", "")
    address, ca = ["--api-public-address", "api.example.com:443"], ["--api-ca-hint", "~/x.pem"]
    _, by_flags = _built(["--session-key", KEY, *address, *ca])
    _, by_env = _built(
        ["--session-key", KEY],
        {
            "BUGLESS_WEB_API_PUBLIC_ADDRESS": " api.example.com:443 ",
            "BUGLESS_WEB_API_CA_HINT": "~/x.pem",
        },
    )
    for settings in (by_flags, by_env):
        assert settings.api_public_address == "api.example.com:443"
        assert settings.api_ca_hint == "~/x.pem"
    _, v6 = _built(["--session-key", KEY, "--api-public-address", "[2001:db8::1]:50053"])
    assert v6.api_public_address == "[2001:db8::1]:50053"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--api-public-address", "https://api.example.com:443"], "give host:port (no scheme"),
        (["--api-public-address", "api.example.com"], "with a port from 1 to 65535"),
        (["--api-public-address", "api.example.com:0"], "with a port from 1 to 65535"),
        (["--api-public-address", "api.example.com:70000"], "with a port from 1 to 65535"),
        # str.isdigit takes these, but int refuses the first in its own words
        # and reads the second as 443, which no copied command could use.
        (["--api-public-address", "api.example.com:443\N{SUPERSCRIPT TWO}"], "a port from 1 to"),
        (["--api-public-address", "api.example.com:\u0664\u0664\u0663"], "a port from 1 to"),
        (["--api-public-address", "2001:db8::1:443"], "write an IPv6 address in brackets"),
        (["--api-public-address", "api example:443"], "give host:port (no scheme"),
        (["--api-ca-hint", "ca.pem\nrm -rf ~"], "give a file name on one line"),
    ],
)
def test_an_api_address_or_ca_hint_the_page_could_not_show_fails_start_up(
    args: list[str], said: str
) -> None:
    """Refused before serving: the page shows them as a command people copy."""
    result = CliRunner().invoke(web_group, ["serve", *BACKENDS, "--session-key", KEY, *args])
    assert result.exit_code == 2, result.output
    assert said in " ".join(result.output.split())
