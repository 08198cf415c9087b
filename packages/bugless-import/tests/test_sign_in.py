"""Who runs the import: ``--user NAME`` signs them in with their password (or ``--token``).

Before ``--user`` the only way was ``BUGLESS_IMPORT_TOKEN``, a session token
no command or page gave anyone: a person following the README could not run
an import at all.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from pathlib import Path

import pytest
from import_support import PASSWORD, MakeSettings, find, redmine_tree

from bugless_core.errors import PermissionDenied, Unauthenticated, Unavailable
from bugless_core.service_address import ServiceAddress
from bugless_dev.stack import LocalStack
from bugless_import import run_import
from bugless_import.sources.redmine import RedmineImporter
from bugless_proto import v1
from bugless_testing.ports import refused_port
from bugless_testing.program import BUGLESS_SCRIPT


async def test_a_user_and_password_sign_the_import_in(
    make_settings: MakeSettings, tmp_path: Path, model: v1.ModelStub
) -> None:
    importer = RedmineImporter(str(redmine_tree(tmp_path, 9112)), {})
    report = await run_import(importer, make_settings(token="", user="importer", password=PASSWORD))
    assert report.created == 3
    assert len(await find(model, "redmine:9112")) == 1


async def test_a_wrong_password_writes_nothing(
    make_settings: MakeSettings, tmp_path: Path, model: v1.ModelStub
) -> None:
    importer = RedmineImporter(str(redmine_tree(tmp_path, 9122)), {})
    with pytest.raises(Unauthenticated):
        await run_import(importer, make_settings(token="", user="importer", password="wrong"))
    assert await find(model, "redmine:9122") == []


async def test_without_a_user_or_token_the_error_says_how_to_give_one(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    importer = RedmineImporter(str(redmine_tree(tmp_path, 9132)), {})
    with pytest.raises(PermissionDenied, match="--user USERNAME") as raised:
        await run_import(importer, make_settings(token=""))
    assert "--token" in raised.value.message


async def test_the_command_reads_the_password_from_standard_input(
    tmp_path: Path, model: v1.ModelStub, *, bugless_stack: LocalStack
) -> None:
    files = bugless_stack.pki.service_certificate("import")
    args = [
        BUGLESS_SCRIPT, "import", "redmine", str(redmine_tree(tmp_path, 9142)),
        "--user", "importer",
        "--model", f"{bugless_stack.model.host}:{bugless_stack.model.port}",
        "--auth", f"{bugless_stack.auth.host}:{bugless_stack.auth.port}",
        "--state-dir", str(tmp_path / "state"), "--quiet",
        "--tls-ca", str(bugless_stack.pki.ca_file), "--tls-cert", str(files.cert),
        "--tls-key", str(files.key),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "BUGLESS_IMPORT_TOKEN"}
    done = await asyncio.to_thread(
        subprocess.run, args, input=f"{PASSWORD}\n", env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "imported: 3 new" in done.stdout
    assert PASSWORD not in done.stdout + done.stderr
    assert len(await find(model, "redmine:9142")) == 1


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_an_unreachable_service_is_named_with_its_address(
    make_settings: MakeSettings, tmp_path: Path, *, bugless_stack: LocalStack
) -> None:
    """Before: 'a backend service is unreachable: [Errno 111] Connection refused'."""
    importer = RedmineImporter(str(redmine_tree(tmp_path, 9152)), {})
    port = _closed_port()
    with pytest.raises(Unavailable, match=rf"^the Authenticator at 127\.0\.0\.1:{port}: "):
        await run_import(importer, make_settings(auth=ServiceAddress("127.0.0.1", port)))
    auth = bugless_stack.auth
    plaintext = make_settings(tls_ca=None, tls_cert=None, tls_key=None)
    with pytest.raises(Unavailable) as raised:
        await run_import(importer, plaintext)
    assert raised.value.message.startswith(f"the Authenticator at {auth.host}:{auth.port}: ")
    assert raised.value.message.endswith("if it serves TLS, give --tls-ca, --tls-cert, --tls-key")


async def test_an_unreachable_ipv6_service_is_named_with_its_host_in_brackets(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    """Before: 'the Authenticator at ::1:PORT', which reads as one address."""
    importer = RedmineImporter(str(redmine_tree(tmp_path, 9153)), {})
    with refused_port("::1") as port, pytest.raises(Unavailable) as raised:
        await run_import(importer, make_settings(auth=ServiceAddress("::1", port)))
    assert raised.value.message.startswith(f"the Authenticator at [::1]:{port}: ")
