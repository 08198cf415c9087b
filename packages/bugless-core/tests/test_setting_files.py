"""Files that settings name are read and checked when the command starts.

:mod:`bugless_core.setting_files`, through :func:`bugless_core.settings.settings_command`.

A command built with ``settings_command`` from a class whose path settings
declare ``content``/``key_of``/``directory`` is run by click's CliRunner on
real files (trustme's certificates and keys); ``bugless-dev``'s
test_start_file_errors runs every serve command the same way as a subprocess.
"""

from __future__ import annotations

import dataclasses
import ssl
import warnings
from pathlib import Path

import click
import pytest
import trustme
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bugless_core.errors import InvalidArgument
from bugless_core.setting_files import (
    SettingFileError,
    check_setting_file,
    pem_certificates,
    pem_private_key,
)
from bugless_core.settings import setting, settings_command, settings_from_environ


@dataclasses.dataclass(frozen=True, kw_only=True)
class FileSettings:
    """A certificate, its key, a CA bundle and a directory, as a service declares them."""

    cert: Path | None = setting(None, content=pem_certificates, help="Certificate.")
    key: Path | None = setting(None, content=pem_private_key, key_of="cert", help="Its key.")
    cas: tuple[Path, ...] = setting((), multiple=True, content=pem_certificates, help="CAs.")
    archive: Path | None = setting(None, directory=True, help="A directory.")

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("--cert and --key go together")


@dataclasses.dataclass(frozen=True)
class Pems:
    cert: Path
    key: Path
    other_key: Path
    ca: Path


@pytest.fixture(scope="module")
def pems(tmp_path_factory: pytest.TempPathFactory) -> Pems:
    root = tmp_path_factory.mktemp("pems")
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost")
    other = trustme.CA().issue_cert("localhost")
    leaf.cert_chain_pems[0].write_to_path(str(root / "cert.pem"))
    leaf.private_key_pem.write_to_path(str(root / "key.pem"))
    other.private_key_pem.write_to_path(str(root / "other_key.pem"))
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    return Pems(root / "cert.pem", root / "key.pem", root / "other_key.pem", root / "ca.pem")


def _run(args: list[str], env: dict[str, str] | None = None) -> tuple[Result, list[FileSettings]]:
    built: list[FileSettings] = []

    @click.command()
    @settings_command(FileSettings, env_prefix="TEST_")
    def command(settings: FileSettings) -> None:
        built.append(settings)

    return CliRunner().invoke(command, args, env=env or {}), built


def test_good_files_build_the_settings(pems: Pems, tmp_path: Path) -> None:
    args = ["--cert", str(pems.cert), "--key", str(pems.key), "--cas", str(pems.ca)]
    result, built = _run([*args, "--archive", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert built == [FileSettings(cert=pems.cert, key=pems.key, cas=(pems.ca,), archive=tmp_path)]


@pytest.mark.parametrize(
    ("flag", "given", "problem"),
    [
        ("--cas", "missing", "no such file"),
        ("--cas", "directory", "is a directory, not a file"),
        ("--cas", "key", "not a PEM certificate: no BEGIN CERTIFICATE block (it holds a "
         "private key)"),
        ("--key", "cert", "not a PEM private key: no BEGIN PRIVATE KEY block (it holds a "
         "certificate)"),
        ("--archive", "missing", "no such directory"),
        ("--archive", "cert", "is a file, not a directory"),
    ],
)  # fmt: skip
def test_a_bad_file_is_one_line_with_status_2_naming_flag_file_and_problem(
    flag: str, given: str, problem: str, pems: Pems, tmp_path: Path
) -> None:
    path = {"missing": tmp_path / "absent.pem", "directory": tmp_path}.get(given)
    path = path or getattr(pems, given)
    args = ["--cert", str(pems.cert), "--key", str(pems.key), flag, str(path)]
    result, built = _run(args)
    assert result.exit_code == 2
    assert result.output == f"Error: {flag} {path}: {problem}\n"
    assert built == []


def test_a_key_of_another_certificate_is_refused_naming_both(pems: Pems) -> None:
    result, _ = _run(["--cert", str(pems.cert), "--key", str(pems.other_key)])
    assert result.exit_code == 2
    assert result.output == (
        f"Error: --key {pems.other_key}: not the private key of --cert {pems.cert} "
        "(another key pair)\n"
    )


def test_a_file_from_a_variable_is_named_with_the_variable(pems: Pems) -> None:
    result, _ = _run([], {"TEST_CAS": f"{pems.ca}:{pems.key}"})
    assert result.exit_code == 2
    assert result.output.startswith(f"Error: --cas (from TEST_CAS) {pems.key}: not a PEM")


def test_a_refused_combination_is_reported_before_any_file_is_read(tmp_path: Path) -> None:
    result, _ = _run(["--cert", str(tmp_path / "absent.pem")])
    assert result.exit_code == 2
    assert "--cert and --key go together" in result.output


def test_settings_from_the_environment_check_the_files_too(pems: Pems) -> None:
    environ = {"TEST_CERT": str(pems.cert), "TEST_KEY": str(pems.other_key)}
    with pytest.raises(InvalidArgument, match=r"^TEST_KEY .*: not the private key of TEST_CERT"):
        settings_from_environ(FileSettings, environ, env_prefix="TEST_")


def test_an_encrypted_key_is_refused_saying_so(tmp_path: Path) -> None:
    path = tmp_path / "encrypted.pem"
    path.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(SettingFileError) as caught:
        check_setting_file("--key", path, pem_private_key)
    assert caught.value.message == (f"--key {path}: an encrypted private key; give it unencrypted")


def test_a_system_ca_bundle_is_accepted_without_a_warning() -> None:
    """Old roots (a serial that is not positive) warn in cryptography; OpenSSL uses them."""
    bundle = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(pem_certificates(bundle.read_bytes())) > 1
