"""``bugless auth bot issue``: the operator's path to a bot certificate, end to end.

The team makes a key and a CSR; the operator runs the real command (a
subprocess) with the CA the API trusts for bots and the mapping file a
serving Authenticator reads; the certificate it writes then signs in through
``AuthenticateCertificate`` on a real Authenticator as the bot, with its
groups. Refusals (a CSR for another name, a name mapped to someone else)
write nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import tomllib
from pathlib import Path

import pytest
from auth_support import AuthServer, StartAuth
from certificates import Pki, make_pki
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bugless_proto import v1
from bugless_testing.program import BUGLESS_SCRIPT


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("bot-pki"))


def _team_csr(directory: Path, common_name: str | None) -> Path:
    """What the team does: a key that stays with them, and a CSR to send."""
    key = ec.generate_private_key(ec.SECP256R1())
    (directory / "bot.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    names = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else []
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(names))
    path = directory / "bot.csr"
    path.write_bytes(csr.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    return path


def _issue(pki: Pki, directory: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """``bugless auth bot issue`` as the operator runs it."""
    ca_key = directory / "client-ca.key"
    if not ca_key.exists():
        pki.ca.private_key_pem.write_to_path(str(ca_key))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUGLESS_")}
    ca = ["--ca-cert", str(pki.ca_file), "--ca-key", str(ca_key)]
    return subprocess.run(
        [BUGLESS_SCRIPT, "auth", "bot", "issue", *arguments, *ca],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def _present(server: AuthServer, pem: bytes) -> v1.AuthenticationResult:
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    return await server.stub.authenticate_certificate(
        v1.AuthenticateCertificateRequest(certificate_der=der)
    )


async def test_an_issued_bot_certificate_signs_in_as_the_bot_without_a_restart(
    start_auth_server: StartAuth, pki: Pki, tmp_path: Path
) -> None:
    mapping = tmp_path / "certificates.json"
    mapping.write_text(pki.mapping_file.read_text())
    server = await start_auth_server(
        authenticators=("tls",),
        authenticator_options={
            "tls": {
                "mapping_file": str(mapping),
                "ca_file": str(pki.ca_file),
                "reload_check_seconds": "0",
            }
        },
    )
    csr = _team_csr(tmp_path, "release-bot")
    done = await asyncio.to_thread(
        _issue,
        pki,
        tmp_path,
        "release-bot",
        "--csr",
        str(csr),
        "--mapping-file",
        str(mapping),
        "--groups",
        "bots,releasers",
        "--out",
        str(tmp_path / "bot.pem"),
    )
    assert done.returncode == 0, done.stderr
    assert f"'release-bot' -> bot 'release-bot' added to {mapping}" in done.stderr
    result = await _present(server, (tmp_path / "bot.pem").read_bytes())
    assert result.identity is not None
    assert result.identity.user is not None
    assert result.identity.user.username == "release-bot"
    assert result.identity.user.bot
    assert result.identity.groups == ["bots", "releasers"]
    assert json.loads(mapping.read_text())["deploy-bot"]["username"] == "deploy-bot"

    # A renewal (a new key, the same name) keeps the mapping and the user id.
    before = mapping.read_text()
    renewed = await asyncio.to_thread(
        _issue,
        pki,
        tmp_path,
        "release-bot",
        "--csr",
        str(_team_csr(tmp_path, None)),
        "--mapping-file",
        str(mapping),
        "--out",
        str(tmp_path / "renewed.pem"),
    )
    assert renewed.returncode == 0, renewed.stderr
    assert "already in" in renewed.stderr
    assert mapping.read_text() == before
    again = await _present(server, (tmp_path / "renewed.pem").read_bytes())
    assert again.identity is not None
    assert again.identity.user is not None
    assert again.identity.user.user_id == result.identity.user.user_id


def test_a_toml_mapping_keeps_its_lines_and_gains_the_bot(pki: Pki, tmp_path: Path) -> None:
    mapping = tmp_path / "certificates.toml"
    mapping.write_text('# the team bots\n["deploy-bot"]\nusername = "deploy-bot"\n')
    done = _issue(
        pki,
        tmp_path,
        "nightly-bot",
        "--csr",
        str(_team_csr(tmp_path, None)),
        "--mapping-file",
        str(mapping),
        "--display-name",
        "Nightly builds",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("-----BEGIN CERTIFICATE-----")
    text = mapping.read_text()
    assert text.startswith('# the team bots\n["deploy-bot"]\nusername = "deploy-bot"\n')
    assert '["nightly-bot"]\nusername = "nightly-bot"\ngroups = []\nbot = true\n' in text
    assert 'display_name = "Nightly builds"' in text


def test_a_toml_mapping_takes_a_display_name_past_the_basic_plane(pki: Pki, tmp_path: Path) -> None:
    # JSON escapes an emoji as two surrogates, which TOML refuses: before, the
    # command ended in a traceback (exit 1) instead of mapping the bot.
    mapping = tmp_path / "certificates.toml"
    mapping.write_text('["deploy-bot"]\nusername = "deploy-bot"\n')
    done = _issue(
        pki,
        tmp_path,
        "nightly-bot",
        "--csr",
        str(_team_csr(tmp_path, None)),
        "--mapping-file",
        str(mapping),
        "--display-name",
        "\N{ROBOT FACE} Nightly\x7f",
    )
    assert done.returncode == 0, done.stderr
    entry = tomllib.loads(mapping.read_text())["nightly-bot"]
    assert entry["display_name"] == "\N{ROBOT FACE} Nightly\x7f"


@pytest.mark.parametrize(
    ("name", "csr_name", "message", "status"),
    [
        ("release-bot", "someone-else", "--csr: asks for the subject 'CN=someone-else', not ", 2),
        ("deploy-bot", None, "'deploy-bot' is mapped to 'deploy-bot'", 4),
    ],
)
def test_a_refused_request_writes_nothing(
    pki: Pki, tmp_path: Path, *, name: str, csr_name: str | None, message: str, status: int
) -> None:
    """A value refused exits 2; a name mapped to another bot is a name taken,
    4 as in ``bugless auth user add`` (it exited 2, so a script could not
    tell it from a CSR it should fix)."""
    mapping = tmp_path / "certificates.json"
    mapping.write_text(pki.mapping_file.read_text())
    before = mapping.read_text()
    arguments = ["--csr", str(_team_csr(tmp_path, csr_name)), "--mapping-file", str(mapping)]
    if name == "deploy-bot":
        arguments += ["--username", "another-bot"]
    done = _issue(pki, tmp_path, name, *arguments, "--out", str(tmp_path / "bot.pem"))
    assert done.returncode == status, done.stderr
    assert message in done.stderr
    assert mapping.read_text() == before
    assert not (tmp_path / "bot.pem").exists()


def test_a_mapping_file_that_cannot_be_written_hands_out_no_certificate(
    pki: Pki, tmp_path: Path
) -> None:
    """Its directory missing (or read-only): a clear error, no traceback, and no
    certificate for a name the mapping does not hold (it was printed before the
    mapping's write failed in an OSError traceback). It exits 2, a flag naming
    a place the command cannot write, as a client command's -o does (it was 1,
    the status of a service that failed)."""
    not_a_directory = tmp_path / "a-file"
    not_a_directory.write_text("")
    mapping = not_a_directory / "certificates.toml"
    done = _issue(
        pki,
        tmp_path,
        "nightly-bot",
        "--csr",
        str(_team_csr(tmp_path, None)),
        "--mapping-file",
        str(mapping),
        "--out",
        str(tmp_path / "bot.pem"),
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert f"--mapping-file: cannot write {mapping}" in done.stderr
    assert not (tmp_path / "bot.pem").exists()
    assert done.stdout == ""
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_the_rewritten_mapping_keeps_the_files_permissions(pki: Pki, tmp_path: Path) -> None:
    """Replaced through a new file, the mapping keeps its mode (0640: the
    Authenticator's account reads it through its group), not the umask's."""
    mapping = tmp_path / "certificates.toml"
    mapping.write_text('["deploy-bot"]\nusername = "deploy-bot"\n')
    mapping.chmod(0o640)
    done = _issue(
        pki, tmp_path, "nightly-bot", "--csr", str(_team_csr(tmp_path, None)),
        "--mapping-file", str(mapping),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "nightly-bot" in tomllib.loads(mapping.read_text())
    assert mapping.stat().st_mode & 0o777 == 0o640


def test_a_renewal_asking_for_other_groups_or_name_says_the_entry_is_kept(
    pki: Pki, tmp_path: Path
) -> None:
    """A renewal keeps the mapped entry: --groups or --display-name that differ
    from it are refused, naming what it holds, instead of being dropped while
    the command said the name was "already in" the mapping (exit 0)."""
    mapping = tmp_path / "certificates.toml"
    mapping.write_text("# bots\n")
    first = ["--mapping-file", str(mapping), "--groups", "bots", "--display-name", "Nightly"]
    done = _issue(pki, tmp_path, "nightly-bot", "--csr", str(_team_csr(tmp_path, None)), *first)
    assert done.returncode == 0, done.stderr
    before = mapping.read_text()
    same = _issue(pki, tmp_path, "nightly-bot", "--csr", str(_team_csr(tmp_path, None)), *first)
    assert same.returncode == 0, same.stderr
    assert "already in" in same.stderr
    for option, value, said in (
        ("--groups", "bots,deployers", "is mapped with the groups bots in"),
        ("--display-name", "Nightly builds", "is mapped as 'Nightly' in"),
    ):
        refused = _issue(
            pki, tmp_path, "nightly-bot", "--csr", str(_team_csr(tmp_path, None)),
            "--mapping-file", str(mapping), option, value, "--out", str(tmp_path / "new.pem"),
        )  # fmt: skip
        assert refused.returncode == 2, option
        assert f"{option}: 'nightly-bot' {said} {mapping}" in refused.stderr
        assert mapping.read_text() == before
        assert not (tmp_path / "new.pem").exists()


@pytest.mark.parametrize("mapping_exists", [True, False])
@pytest.mark.parametrize("where", ["under-a-file", "missing-directory"])
def test_an_out_that_cannot_be_written_changes_nothing(
    pki: Pki, tmp_path: Path, *, mapping_exists: bool, where: str
) -> None:
    """Refused before anything is written: the mapping stays as it was (or
    stays missing), and no certificate or file is left. Before, the mapping
    took the name first, then writing --out failed with exit 2, so the
    refusal had changed the mapping (the --out check sat after its write)."""
    mapping = tmp_path / "certificates.toml"
    if mapping_exists:
        mapping.write_text('["deploy-bot"]\nusername = "deploy-bot"\n')
    text = mapping.read_text() if mapping_exists else None
    (tmp_path / "a-file").write_text("")
    out = tmp_path / ("a-file" if where == "under-a-file" else "missing") / "bot.pem"
    csr = _team_csr(tmp_path, None)
    before = {p.name for p in tmp_path.iterdir()} | {"client-ca.key"}  # _issue writes the key
    done = _issue(
        pki, tmp_path, "nightly-bot", "--csr", str(csr), "--mapping-file", str(mapping),
        "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert (mapping.read_text() if mapping.exists() else None) == text
    assert {p.name for p in tmp_path.iterdir()} == before  # no new mapping, no temporary
    assert "Traceback" not in done.stderr
    assert f"--out: cannot write {out} (" in done.stderr
    assert "nothing was issued or changed" in done.stderr
    assert done.stdout == ""


def test_an_out_that_was_there_is_left_as_it_was_when_the_mapping_cannot_be_written(
    pki: Pki, tmp_path: Path
) -> None:
    """--out is opened before the mapping's write, without truncating: the
    mapping's refusal leaves the file the operator had there whole."""
    not_a_directory = tmp_path / "a-file"
    not_a_directory.write_text("")
    out = tmp_path / "bot.pem"
    out.write_text("the previous certificate\n")
    done = _issue(
        pki, tmp_path, "nightly-bot", "--csr", str(_team_csr(tmp_path, None)),
        "--mapping-file", str(not_a_directory / "certificates.toml"), "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "--mapping-file: cannot write" in done.stderr
    assert out.read_text() == "the previous certificate\n"


@pytest.mark.parametrize(
    ("leave", "said"),
    [
        ("--csr option", "Missing option '--csr'."),
        ("--ca-cert option", "Missing option '--ca-cert'."),
        ("--ca-key option", "Missing option '--ca-key'."),
        ("--csr file", "Invalid value for '--csr': '{path}': No such file or directory"),
        ("--ca-cert file", "Invalid value for '--ca-cert': '{path}': No such file or directory"),
        ("--ca-key file", "Invalid value for '--ca-key': '{path}': No such file or directory"),
    ],
)
def test_a_missing_option_or_file_is_bad_usage_naming_the_option(
    pki: Pki, tmp_path: Path, leave: str, said: str
) -> None:
    """The exit-status table decides: 2 (bad usage: a required option missing or a file
    an option names that cannot be read), never 3, which is its "not found" of the
    tracker's things. Click's missing --csr and a missing CA file read alike now:
    before, a missing --ca-cert file said "PATH: No such file or directory", naming
    no option. Nothing is written."""
    ca_key = tmp_path / "client-ca.key"
    pki.ca.private_key_pem.write_to_path(str(ca_key))
    mapping = tmp_path / "certificates.json"
    mapping.write_text(pki.mapping_file.read_text())
    before = mapping.read_text()
    given = {
        "--csr": str(_team_csr(tmp_path, None)),
        "--ca-cert": str(pki.ca_file),
        "--ca-key": str(ca_key),
    }
    option, what = leave.split()
    missing = tmp_path / "not-there.pem"
    if what == "option":
        del given[option]
    else:
        given[option] = str(missing)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUGLESS_")}
    flags = [part for pair in given.items() for part in pair]
    done = subprocess.run(
        [
            BUGLESS_SCRIPT,
            "auth",
            "bot",
            "issue",
            "nightly-bot",
            *flags,
            "--mapping-file",
            str(mapping),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.endswith(f"Error: {said.format(path=missing)}\n"), done.stderr
    assert done.stdout == ""
    assert mapping.read_text() == before
