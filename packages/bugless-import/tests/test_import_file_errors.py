"""A bad file given to ``bugless import`` is one line naming the option, the file and the problem.

The real ``bugless import github`` runs as a subprocess with real files
(trustme certificates and keys, a real mapping): each case replaces one file
option's value with a missing file, a directory where the file belongs, or
one with the wrong content. The command must exit with status 2, print
exactly one line and no traceback, and must not have connected anywhere:
``--model`` and ``--auth`` point at a listening socket of the test, which
must have accepted no connection. Before these checks a CA file holding a
key was a traceback from :mod:`ssl`, and a mapping that is not UTF-8 one
from the decoder, after the source had been read.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from bugless_dev.processes import BUGLESS_COMMAND
from bugless_testing.start_refusals import (
    assert_one_line_refusal,
    assert_unvisited,
    canary_socket,
    clean_environment,
    run_bugless,
)

FIXTURES = Path(__file__).parent / "fixtures"


@dataclass(frozen=True)
class Files:
    """Good files, and the wrong ones the cases give instead."""

    ca: Path
    cert: Path
    key: Path
    other_key: Path
    mapping: Path
    garbage: Path
    not_utf8: Path
    unknown_section: Path
    unknown_value: Path
    bad_label: Path
    directory: Path
    missing: Path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    root = tmp_path_factory.mktemp("import-files")
    ca = trustme.CA()
    leaf = ca.issue_cert("import-bot")
    written = {
        "ca": ca.cert_pem.bytes(),
        "cert": b"".join(blob.bytes() for blob in leaf.cert_chain_pems),
        "key": leaf.private_key_pem.bytes(),
        "other_key": trustme.CA().issue_cert("x").private_key_pem.bytes(),
        "mapping": b'[priorities]\nblocker = "P0"\n[labels]\nregression = "hotlist:Regr"\n',
        "garbage": b"not a key, not a certificate, not [TOML\n",
        "not_utf8": b'[components]\n"Stra\xdfe" = "Roads"\n',  # Latin-1
        "unknown_section": b'[moods]\nhappy = "P1"\n',
        "unknown_value": b'[priorities]\nblocker = "P9"\n',
        "bad_label": b'[labels]\nx = "folder:y"\n',
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
    """A listening socket ``--model`` and ``--auth`` point at; it must stay unvisited."""
    with canary_socket() as listener:
        yield listener


def _args(files: Files, address: str, state_dir: Path, **given: Path) -> list[str]:
    """``import github`` with good files, but for ``given`` (``tls_ca=...``)."""
    flags = {
        "tls_ca": files.ca,
        "tls_cert": files.cert,
        "tls_key": files.key,
        "mapping": files.mapping,
        **given,
    }
    args = ["import", "github", str(FIXTURES / "github"), "--model", address, "--auth", address]
    args += ["--token", "not-a-real-token", "--state-dir", str(state_dir), "--quiet"]
    for name, path in flags.items():
        args += [f"--{name.replace('_', '-')}", str(path)]
    return args


def _assert_refused(
    result: subprocess.CompletedProcess[str], named: str, path: Path, canary: socket.socket
) -> str:
    line = assert_one_line_refusal(result, named, path)
    assert_unvisited(canary)  # nothing connected to --model or --auth
    return line


def test_the_canary_sees_an_import_given_good_files(files: Files, tmp_path: Path) -> None:
    """The control: with the good files, the import connects to the canary's address.

    So "accepted no connection" in the other tests means the refused import
    did not connect, not that nothing could have.
    """
    with socket.create_server(("127.0.0.1", 0)) as listener:
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        process = subprocess.Popen(
            [*BUGLESS_COMMAND, *_args(files, address, tmp_path / "state")],
            env=clean_environment(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            listener.settimeout(120)
            connection, _ = listener.accept()
            connection.close()
        finally:
            process.kill()
            _, stderr = process.communicate(timeout=60)
        assert "Traceback" not in stderr


#: (option, wrong file, what the line says of it)
WRONG_CONTENT = [
    ("tls_ca", "key", "not a PEM certificate: no BEGIN CERTIFICATE block (it holds a private key)"),
    ("tls_cert", "garbage", "not a PEM certificate"),
    ("tls_key", "cert", "not a PEM private key: no BEGIN PRIVATE KEY block (it holds a cert"),
    ("tls_key", "other_key", "not the private key of --tls-cert"),
    ("mapping", "garbage", "not valid TOML"),
    ("mapping", "not_utf8", "not UTF-8 text"),
    ("mapping", "unknown_section", "unknown section [moods]"),
    ("mapping", "unknown_value", "[priorities]: 'P9' is not a bugless value"),
    ("mapping", "bad_label", "[labels] 'x': 'folder:y' is neither 'hotlist:<name>'"),
    ("mapping", "ca", "not valid TOML"),
]
#: What the line says of the two other kinds of bad file.
KINDS = {"missing": "no such file", "directory": "is a directory, not a file"}


@pytest.mark.parametrize("case", WRONG_CONTENT, ids=[f"{o} {w}" for o, w, _ in WRONG_CONTENT])
def test_a_file_with_the_wrong_content_is_one_line_with_status_2(
    case: tuple[str, str, str], files: Files, canary: socket.socket, tmp_path: Path
) -> None:
    option, wrong, problem = case
    path: Path = getattr(files, wrong)
    address = f"127.0.0.1:{canary.getsockname()[1]}"
    result = run_bugless(_args(files, address, tmp_path / "state", **{option: path}), {})
    line = _assert_refused(result, f"--{option.replace('_', '-')}", path, canary)
    assert problem in line
    assert not (tmp_path / "state").exists()  # refused before the run began


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("option", ["tls_ca", "tls_cert", "tls_key", "mapping"])
def test_a_missing_or_unreadable_file_is_one_line_with_status_2(
    option: str, kind: str, files: Files, canary: socket.socket, tmp_path: Path
) -> None:
    path: Path = getattr(files, kind)
    address = f"127.0.0.1:{canary.getsockname()[1]}"
    result = run_bugless(_args(files, address, tmp_path / "state", **{option: path}), {})
    line = _assert_refused(result, f"--{option.replace('_', '-')}", path, canary)
    assert line.endswith(KINDS[kind])


def test_a_mapping_from_the_variable_is_named_by_its_flag_and_the_variable(
    files: Files, canary: socket.socket, tmp_path: Path
) -> None:
    address = f"127.0.0.1:{canary.getsockname()[1]}"
    args = _args(files, address, tmp_path / "state")
    mapping_at = args.index("--mapping")
    del args[mapping_at : mapping_at + 2]
    result = run_bugless(args, {"BUGLESS_IMPORT_MAPPING": str(files.not_utf8)})
    named = "--mapping (from BUGLESS_IMPORT_MAPPING)"
    assert "not UTF-8 text" in _assert_refused(result, named, files.not_utf8, canary)


def test_a_dry_run_checks_the_mapping_before_reading_the_source(
    files: Files, tmp_path: Path
) -> None:
    """A dry run (no services) is where a mapping is tried first: refused just the same."""
    result = run_bugless(
        ["import", "github", str(tmp_path / "no-export-here"), "--dry-run", "--mapping",
         str(files.unknown_value)],
        {},
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert result.stderr.strip().splitlines() == [
        f"Error: --mapping {files.unknown_value}: [priorities]: 'P9' is not a bugless value; "
        "use one of P0, P1, P2, P3, P4"
    ], output
    assert result.returncode == 2, output


#: (options left out, what the line says): a client certificate needs its key and a CA.
PARTIAL_TLS = [
    (("tls_ca",), "--tls-cert/--tls-key need --tls-ca"),
    (("tls_key",), "--tls-cert needs --tls-key"),
    (("tls_cert",), "--tls-key needs --tls-cert"),
]


@pytest.mark.parametrize("case", PARTIAL_TLS, ids=[",".join(left) for left, _ in PARTIAL_TLS])
def test_a_client_certificate_without_its_key_or_the_ca_is_refused_before_anything_runs(
    case: tuple[tuple[str, ...], str], files: Files, canary: socket.socket, tmp_path: Path
) -> None:
    """TLS is on only with a CA: before, a certificate without one was silently unused.

    The import then connected in plaintext and failed against a mutual-TLS
    Model with an error naming no option (a key without its certificate, the
    same). Now the command refuses at once, as ``web serve`` does.
    """
    left_out, problem = case
    address = f"127.0.0.1:{canary.getsockname()[1]}"
    args = _args(files, address, tmp_path / "state")
    for option in left_out:
        at = args.index(f"--{option.replace('_', '-')}")
        del args[at : at + 2]
    result = run_bugless(args, {})
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert problem in output
    assert result.returncode == 2, output
    assert_unvisited(canary)
    assert not (tmp_path / "state").exists()


def test_a_source_no_importer_is_installed_for_is_bad_usage_naming_the_installed_ones(
    tmp_path: Path,
) -> None:
    """2 with the choices, as ``--model`` naming no backend; it exited 1 (a failed service)."""
    result = run_bugless(
        ["import", "githb", str(tmp_path), "--dry-run", "--state-dir", str(tmp_path / "state")], {}
    )
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: Invalid value for SOURCE: unknown importer 'githb'; installed: github, jira, "
        "redmine, roundup, trac; did you mean 'github'?"
    ), output
    assert result.returncode == 2, output
    assert not (tmp_path / "state").exists()


#: (source, location, the options besides the file's, the file's option)
SECRET_FILES = [
    ("github", str(FIXTURES / "github"), [], "token-file"),
    ("redmine", "http://127.0.0.1:9/", [], "api-key-file"),
    ("roundup", "http://127.0.0.1:9/tracker/", ["user=admin"], "password-file"),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", SECRET_FILES, ids=[case[0] for case in SECRET_FILES])
def test_a_secret_file_an_option_names_that_cannot_be_read_is_one_line_with_status_2(
    case: tuple[str, str, list[str], str],
    kind: str,
    files: Files,
    canary: socket.socket,
    tmp_path: Path,
) -> None:
    """A token, key or password file as the other files: 2, one line, nothing reached.

    It exited 1, a failed service's status (GitHub's and Redmine's), or with
    a traceback after the run had begun (Roundup's password, read at sign-in).
    """
    source, location, options, option = case
    path: Path = getattr(files, kind)
    address = f"127.0.0.1:{canary.getsockname()[1]}"
    args = _args(files, address, tmp_path / "state")
    args[1:3] = [source, location]
    for given in [*options, f"{option}={path}"]:
        args += ["--option", given]
    result = run_bugless(args, {})
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, output
    said = {"missing": "No such file or directory", "directory": "Is a directory"}[kind]
    assert lines[0] == f"error: --option {option}={path}: {said}", output
    assert result.returncode == 2, output
    assert_unvisited(canary)
    assert not (tmp_path / "state").exists()
