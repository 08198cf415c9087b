"""``BuglessClient.from_config``: a script connects with the settings the commands use.

After ``bugless login`` the certificate is wherever ``client.toml`` says; a
script should not have to know that. These tests write the file as ``login``
does (naming a real certificate of the test stack), connect over real mutual
TLS to the API frontend, and check the order (each variable before the file's
setting) and the errors (nothing configured, a file ``logout`` deleted, an
expired certificate), which are raised before anything is sent.
"""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path

import pytest
from api_support import Bots, ConnectAs, signed_in
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bugless_api.client import BuglessClient, SyncBuglessClient
from bugless_api.server import RunningApi
from bugless_core.errors import InvalidArgument


def _config(directory: Path, **values: object) -> Path:
    """``client.toml`` as ``bugless login`` writes it."""
    path = directory / "client.toml"
    path.write_text("".join(f'{key} = "{value}"\n' for key, value in values.items()))
    return path


def _expired_certificate(directory: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "yesterday")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=2))
        .not_valid_after(now - datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    path = directory / "login.pem"
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return path


async def test_a_script_connects_with_the_config_file_login_writes(
    api: RunningApi, bots: Bots, connect_as: ConnectAs, tmp_path: Path
) -> None:
    await signed_in(connect_as, *bots.certificates)
    robot, viewer = bots["robot"], bots["viewer"]
    config = _config(
        tmp_path,
        api=f"127.0.0.1:{api.port}",
        cert=robot.cert,
        key=robot.key,
        ca=bots.stack.pki.ca_file,
        time_zone="Europe/Berlin",
    )
    environ = {"BUGLESS_CLIENT_CONFIG": str(config)}
    async with BuglessClient.from_config(environ, timeout=30) as client:
        me = await client.whoami()
        assert me.user is not None
        assert me.user.username == "robot"
        assert client.time_zone == "Europe/Berlin"

    # A variable wins over the file's setting, one setting at a time.
    environ |= {"BUGLESS_CERT": str(viewer.cert), "BUGLESS_KEY": str(viewer.key)}
    environ["BUGLESS_TIME_ZONE"] = "Asia/Tokyo"
    async with BuglessClient.from_config(environ) as client:
        me = await client.whoami()
        assert me.user is not None
        assert me.user.username == "viewer"
        assert client.time_zone == "Asia/Tokyo"

    def script() -> str:
        with SyncBuglessClient.from_config(environ, time_zone="UTC") as bugless:
            assert bugless._client.time_zone == "UTC"
            me = bugless.whoami()
            assert me.user is not None
            return me.user.username

    assert await asyncio.to_thread(script) == "viewer"


def test_nothing_configured_names_every_setting_and_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    with pytest.raises(InvalidArgument) as raised:
        BuglessClient.from_config({"BUGLESS_CLIENT_CONFIG": str(missing), "BUGLESS_API": "h:1"})
    assert raised.value.metadata["origin"] == "client"
    message = raised.value.message
    assert message.startswith("not configured: BUGLESS_CERT (or cert in ")
    assert "BUGLESS_API" not in message
    assert f"ca in {missing}" in message
    assert "`bugless login`" in message


def test_a_certificate_logout_deleted_says_to_log_in(bots: Bots, tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        api="127.0.0.1:1",
        cert=tmp_path / "login.pem",
        key=tmp_path / "login.key",
        ca=bots.stack.pki.ca_file,
    )
    with pytest.raises(
        InvalidArgument,
        match=r"^not logged in: .*login\.pem, the cert .*client\.toml names, does not exist; "
        r"run `bugless login`$",
    ):
        BuglessClient.from_config({"BUGLESS_CLIENT_CONFIG": str(config)})


def test_an_expired_certificate_is_named_before_any_handshake(bots: Bots, tmp_path: Path) -> None:
    cert = _expired_certificate(tmp_path)
    config = _config(
        tmp_path, api="127.0.0.1:1", cert=cert, key=bots["robot"].key, ca=bots.stack.pki.ca_file
    )
    with pytest.raises(InvalidArgument, match=r"login\.pem expired at .* `bugless login` again"):
        SyncBuglessClient.from_config({"BUGLESS_CLIENT_CONFIG": str(config)})


def test_a_malformed_config_file_is_named(tmp_path: Path) -> None:
    config = tmp_path / "client.toml"
    config.write_text('api = "unterminated\n')
    with pytest.raises(InvalidArgument, match=r"^config file .*client\.toml: "):
        BuglessClient.from_config({"BUGLESS_CLIENT_CONFIG": str(config)})
