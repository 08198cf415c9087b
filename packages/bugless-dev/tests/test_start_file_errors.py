"""A bad file given at start-up is one line naming the option, the file and the problem.

Every ``bugless <service> serve`` runs as a real subprocess with real files
(trustme certificates and keys, a real token key, a real mapping): each
case replaces one file option's value with a missing file, an unreadable one
(a directory where a file belongs) or one with the wrong content (a key
where a certificate belongs, a certificate of another key pair, ...). The
command must exit with status 2, print exactly one line, and no traceback;
and it must not have connected anywhere: every service address and database
URL points at a listening socket of the test, which must have accepted no
connection when the command is done.

This lives in bugless-dev's tests because it needs every service installed.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from bugless_auth.tokens import generate_ed25519_pem
from bugless_dev._state import VERSION_FILE, open_state_dir
from bugless_dev.processes import BUGLESS_COMMAND
from bugless_testing.start_refusals import (
    assert_one_line_refusal,
    assert_unvisited,
    canary_socket,
    clean_environment,
    run_bugless,
)

SECRET = "0123456789abcdef-secret"


@dataclass(frozen=True)
class Files:
    """Good files, and the wrong ones the cases give instead."""

    ca: Path
    cert: Path
    key: Path
    other_key: Path
    people_ca_cert: Path
    people_ca_key: Path
    token_key: Path
    mapping: Path
    garbage: Path
    directory: Path
    missing: Path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    root = tmp_path_factory.mktemp("start-files")
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost")
    other = trustme.CA().issue_cert("localhost")
    people = trustme.CA()
    written = {
        "ca": ca.cert_pem.bytes(),
        "cert": b"".join(blob.bytes() for blob in leaf.cert_chain_pems),
        "key": leaf.private_key_pem.bytes(),
        "other_key": other.private_key_pem.bytes(),
        "people_ca_cert": people.cert_pem.bytes(),
        "people_ca_key": people.private_key_pem.bytes(),
        "token_key": generate_ed25519_pem(),
        "mapping": json.dumps({"cn=deploy-bot": {"username": "deploy-bot"}}).encode(),
        "garbage": b"not a key, not a certificate\n",
    }
    for name, data in written.items():
        (root / f"{name}.pem").write_bytes(data)
    (root / "directory").mkdir()
    return Files(
        **{name: root / f"{name}.pem" for name in written},
        directory=root / "directory",
        missing=root / "absent.pem",
    )


@pytest.fixture(scope="module")
def canary() -> Iterator[socket.socket]:
    """A listening socket every address of the commands points at; it must stay unvisited."""
    with canary_socket() as listener:
        yield listener


def _base(service: str, files: Files, address: str) -> dict[str, str]:
    """Flags with which ``service`` would start (and connect to ``address``)."""
    database = f"postgresql://nobody@{address}/none"
    server_tls = {"--tls-cert": str(files.cert), "--tls-key": str(files.key),
                  "--client-ca": str(files.ca)}  # fmt: skip
    service_tls = {"--service-ca": str(files.ca), "--service-cert": str(files.cert),
                   "--service-key": str(files.key)}  # fmt: skip
    backends = {"--model": address, "--auth": address}
    return {
        "model": {
            "--database-url": database,
            "--page-token-secret": SECRET,
            "--auth": address,
            **server_tls,
        },
        "auth": {
            "--database-url": database,
            "--token-key-file": str(files.token_key),
            **server_tls,
        },
        "api": {**backends, **server_tls, **service_tls},
        "web": {
            **backends,
            "--session-key": SECRET,
            "--tls-ca": str(files.ca),
            "--tls-cert": str(files.cert),
            "--tls-key": str(files.key),
        },
        "notify": {
            **backends,
            "--database-url": database,
            "--secret-key": SECRET,
            **server_tls,
            **service_tls,
        },
    }[service]


#: Backends whose option files are given, with the other options they need.
BACKENDS = {
    "tls": ["--authenticator", "local,tls"],
    "ldap": ["--authenticator", "local,ldap", "--authenticator-option", "ldap.url=ldap://x"],
    "oidc": ["--authenticator", "local,oidc"],
}


@dataclass(frozen=True)
class Case:
    """One file option of one command.

    Attributes:
        service: The ``bugless <service> serve`` command.
        option: The flag (or ``--authenticator-option NAME.KEY``, or a variable).
        wrong: The field of :class:`Files` that is the wrong content for it.
        problem: What the line must say about the wrong content.
        extra: Further flags the option needs to be read.
    """

    service: str
    option: str
    wrong: str
    problem: str
    extra: tuple[str, ...] = ()

    def command(self, files: Files, address: str, path: Path) -> tuple[list[str], dict[str, str]]:
        """The arguments and added variables that give ``path`` for this option."""
        flags = _base(self.service, files, address)
        env: dict[str, str] = {}
        extra = list(self.extra)
        if self.option.startswith("BUGLESS_"):
            env[self.option] = str(path)
        elif self.option.startswith("--authenticator-option "):
            name_key = self.option.split(" ", 1)[1]
            extra += ["--authenticator-option", f"{name_key}={path}"]
        else:
            flags[self.option] = str(path)
        args = [self.service, "serve", *(part for flag in flags.items() for part in flag)]
        return [*args, *extra], env

    @property
    def named(self) -> str:
        """How the line names the option."""
        return self.option


CERT = "not a PEM certificate"
KEY = "not a PEM private key"
FILE_CASES = [
    Case("model", "--tls-cert", "key", CERT),
    Case("model", "--tls-key", "ca", KEY),
    Case("model", "--client-ca", "key", CERT),
    Case("auth", "--token-key-file", "garbage", "not a usable token key"),
    Case("auth", "--people-ca-cert", "cert", "not a CA certificate",
         ("--people-ca-key", "{people_ca_key}")),
    Case("auth", "--people-ca-key", "cert", KEY, ("--people-ca-cert", "{people_ca_cert}")),
    Case("auth", "--people-ca-previous-cert", "garbage", CERT,
         ("--people-ca-cert", "{people_ca_cert}", "--people-ca-key", "{people_ca_key}")),
    Case("auth", "--authenticator-option tls.mapping_file", "garbage", "not a usable mapping",
         tuple(BACKENDS["tls"])),
    Case("auth", "--authenticator-option tls.ca_file", "key", CERT,
         (*BACKENDS["tls"], "--authenticator-option", "tls.mapping_file={mapping}")),
    Case("auth", "BUGLESS_AUTH_LDAP_CA_FILE", "key", CERT, tuple(BACKENDS["ldap"])),
    Case("auth", "--authenticator-option oidc.ca_file", "garbage", CERT,
         tuple(BACKENDS["oidc"])),
    Case("api", "--service-ca", "key", CERT),
    Case("api", "--service-cert", "garbage", CERT),
    Case("api", "--service-key", "garbage", KEY),
    Case("web", "--tls-ca", "key", CERT),
    Case("web", "--tls-cert", "key", CERT),
    Case("web", "--tls-key", "ca", KEY),
    Case("notify", "--service-key", "cert", KEY),
    Case("notify", "--smtp-ca-file", "key", CERT),
    Case("notify", "--webhook-ca-file", "garbage", CERT),
]  # fmt: skip

#: What the line says of the two other kinds of bad file.
KINDS = {"missing": "no such file", "directory": "is a directory, not a file"}


def _run(
    case: Case, files: Files, canary: socket.socket, path: Path
) -> subprocess.CompletedProcess[str]:
    address = f"127.0.0.1:{canary.getsockname()[1]}"
    args, added = case.command(files, address, path)
    args = [arg.format(**vars(files)) for arg in args]  # "{people_ca_key}": that file
    result = run_bugless(args, added)
    assert_unvisited(canary)  # nothing connected to any address
    return result


def test_the_canary_sees_a_command_given_good_files(files: Files) -> None:
    """The control: with the good files, ``model serve`` connects to the canary's address.

    So "accepted no connection" in the other tests means the refused command
    did not connect, not that nothing could have.
    """
    with socket.create_server(("127.0.0.1", 0)) as listener:
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        flags = _base("model", files, address)
        process = subprocess.Popen(
            [
                *BUGLESS_COMMAND,
                "model",
                "serve",
                *(part for flag in flags.items() for part in flag),
            ],
            env=clean_environment(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            listener.settimeout(120)
            connection, _ = listener.accept()  # its database pool, at the canary
            connection.close()
        finally:
            process.kill()
            _, stderr = process.communicate(timeout=60)
        assert "Traceback" not in stderr


@pytest.mark.parametrize("kind", [*KINDS, "wrong content"])
@pytest.mark.parametrize("case", FILE_CASES, ids=lambda c: f"{c.service} {c.option}")
def test_a_bad_file_is_one_line_naming_option_and_file_with_status_2(
    case: Case, kind: str, files: Files, canary: socket.socket
) -> None:
    path = getattr(files, case.wrong) if kind == "wrong content" else getattr(files, kind)
    line = assert_one_line_refusal(_run(case, files, canary, path), case.named, path)
    assert line.endswith(KINDS[kind]) if kind in KINDS else case.problem in line


@pytest.mark.parametrize(
    ("case", "cert"),
    [
        (Case("model", "--tls-key", "other_key", "not the private key of --tls-cert"), "cert"),
        (Case("api", "--service-key", "other_key", "not the private key of --service-cert"),
         "cert"),
        (Case("web", "--tls-key", "other_key", "not the private key of --tls-cert"), "cert"),
        (Case("auth", "--people-ca-key", "other_key", "not the private key of --people-ca-cert",
              ("--people-ca-cert", "{people_ca_cert}")), "people_ca_cert"),
    ],
    ids=lambda value: f"{value.service} {value.option}" if isinstance(value, Case) else "",
)  # fmt: skip
def test_a_key_of_another_certificate_is_refused_naming_both(
    case: Case, cert: str, files: Files, canary: socket.socket
) -> None:
    result = _run(case, files, canary, files.other_key)
    line = assert_one_line_refusal(result, case.named, files.other_key)
    assert f"{case.problem} {getattr(files, cert)}" in line


def test_a_file_from_a_variable_is_named_by_its_flag_and_the_variable(
    files: Files, canary: socket.socket
) -> None:
    address = f"127.0.0.1:{canary.getsockname()[1]}"
    flags = _base("auth", files, address)
    del flags["--token-key-file"]  # the variable gives the files, the first one good
    result = run_bugless(
        ["auth", "serve", *(part for flag in flags.items() for part in flag)],
        {"BUGLESS_AUTH_TOKEN_KEY_FILES": f"{files.token_key}:{files.garbage}"},
    )
    named = "--token-key-file (from BUGLESS_AUTH_TOKEN_KEY_FILES)"
    assert "not a usable token key" in assert_one_line_refusal(result, named, files.garbage)
    assert_unvisited(canary)


@pytest.mark.parametrize(
    "option_flags", [("--asset-archive-dir",), ("--dev-mailbox", "--dev")], ids=lambda o: o[0]
)
@pytest.mark.parametrize(
    ("kind", "problem"), [("missing", "no such directory"), ("key", "is a file, not a directory")]
)
def test_a_directory_option_naming_no_directory_is_one_line(
    option_flags: tuple[str, ...], kind: str, problem: str, files: Files, canary: socket.socket
) -> None:
    option, *flags = option_flags
    path = getattr(files, kind)
    result = _run(Case("web", option, kind, problem, tuple(flags)), files, canary, path)
    assert assert_one_line_refusal(result, option, path).endswith(problem)


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        ("a file", "a file, not a directory"),
        ("under a file", "cannot be used"),
        ("a corrupt version file", f"{VERSION_FILE} is unreadable"),
        ("an unreadable version file", f"{VERSION_FILE} is unreadable"),
    ],
)
def test_a_bad_state_dir_stops_bugless_dev_in_one_line_before_postgresql_starts(
    kind: str, problem: str, tmp_path: Path
) -> None:
    state_dir = tmp_path / "state"
    if kind == "a file":
        state_dir.write_text("x")
    elif kind == "under a file":
        (tmp_path / "file").write_text("x")
        state_dir = tmp_path / "file" / "state"
    elif kind == "a corrupt version file":
        state_dir.mkdir()
        (state_dir / VERSION_FILE).write_text("{not json")
    else:  # a directory where the version file belongs: it cannot be read
        (state_dir / VERSION_FILE).mkdir(parents=True)
    result = run_bugless(["dev", "--state-dir", str(state_dir)], {})
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith(f"error: --state-dir {state_dir}"), lines[0]
    assert problem in lines[0]
    assert result.returncode == 2, output
    assert not (tmp_path / "state" / "postgres").exists()  # no PostgreSQL was set up


def test_reset_starts_over_a_state_dir_whose_version_file_is_corrupt(tmp_path: Path) -> None:
    """The refusal says "pass --reset to start over": --reset must then do so."""
    (tmp_path / VERSION_FILE).write_text("{not json")
    (tmp_path / "postgres").mkdir()
    state = open_state_dir(tmp_path, reset=True)
    try:
        assert state.created
        assert not (tmp_path / "postgres").exists()
        assert json.loads((tmp_path / VERSION_FILE).read_text())["format"] == state.info["format"]
    finally:
        state.close()


@pytest.mark.parametrize(
    ("left_out", "problem"),
    [
        ("--service-ca", "--service-cert/--service-key need --service-ca"),
        ("--service-key", "--service-cert needs --service-key"),
    ],
)
def test_notify_refuses_a_client_certificate_without_its_ca_or_key(
    left_out: str, problem: str, files: Files, canary: socket.socket
) -> None:
    """The notifier's TLS to the backends is on only with --service-ca.

    Before, a certificate given without it was silently unused: the notifier
    connected in plaintext and failed against the mutual-TLS backends with an
    error naming no option. Now it refuses at once, as ``web serve`` and
    ``bugless import`` do (one rule: ``bugless_core.service_address``).
    """
    address = f"127.0.0.1:{canary.getsockname()[1]}"
    flags = {k: v for k, v in _base("notify", files, address).items() if k != left_out}
    result = run_bugless(["notify", "serve", *(part for flag in flags.items() for part in flag)])
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert problem in output
    assert result.returncode == 2, output
    assert_unvisited(canary)
