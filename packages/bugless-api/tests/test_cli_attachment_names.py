"""``bugless attachment get`` without ``-o`` writes a plain file name, in the current directory.

The name is the server's. The Model stores only a sanitised last segment,
so no name can be made to reach the CLI with a directory in it: the naming
function is checked alone, and a real download through the CLI (the
served API over mutual TLS, on the real Model) lands where it should, and
does not replace a file already there unless told to.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bugless_api.cli.attachments import local_name
from bugless_dev.processes import BUGLESS_COMMAND


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.txt", "report.txt"),
        (".hidden", ".hidden"),
        ("../../etc/passwd", "passwd"),
        ("/etc/cron.d/job", "job"),
        ("..\\..\\evil.exe", "evil.exe"),
        ("dir/", "attachment-7"),
        ("", "attachment-7"),
        (".", "attachment-7"),
        ("..", "attachment-7"),
        ("a/..", "attachment-7"),
        ("nul\0byte", "attachment-7"),
    ],
)
def test_only_a_plain_base_name_is_used(name: str, expected: str) -> None:
    assert local_name(name, 7) == expected


def _bugless(
    env: dict[str, str], cwd: Path, *args: str, ok: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*BUGLESS_COMMAND, *args], env=env, capture_output=True, text=True,
        timeout=180, check=False, cwd=cwd,
    )  # fmt: skip
    if ok:
        assert result.returncode == 0, result.stderr
    return result


def _attached(env: dict[str, str], tmp_path: Path, source: Path) -> str:
    """Attach ``source`` to a new issue (of a new component); the attachment's id."""

    def bugless(*args: str) -> Any:
        return json.loads(_bugless(env, tmp_path, *args, "--json").stdout)

    component = bugless("component", "create", f"CliNames-{os.getpid()}-{source.stem}")
    issue = bugless("issue", "create", "--title", "x", "--component", str(component["id"]))
    return str(bugless("issue", "attach", str(issue["id"]), str(source))["id"])


def test_the_cli_writes_the_attachments_name_in_the_current_directory(
    served_api: dict[str, str], tmp_path: Path
) -> None:
    source = tmp_path / "notes.txt"
    source.write_bytes(b"kept here\n" * 1000)
    attachment_id = _attached(served_api, tmp_path, source)
    here = tmp_path / "here"
    here.mkdir()
    got = _bugless(served_api, here, "attachment", "get", attachment_id, "--json")
    shown = json.loads(got.stdout)
    assert shown["name"] == "notes.txt"
    assert [p.name for p in here.iterdir()] == ["notes.txt"]
    assert (here / "notes.txt").read_bytes() == source.read_bytes()


def test_the_cli_keeps_a_file_of_the_same_name_unless_told_to_replace_it(
    served_api: dict[str, str], tmp_path: Path
) -> None:
    """Before, ``attachment get`` replaced ./report.txt with the download, unasked."""
    source = tmp_path / "report.txt"
    source.write_bytes(b"from the server\n" * 1000)
    attachment_id = _attached(served_api, tmp_path, source)
    here = tmp_path / "here"
    here.mkdir()
    mine = here / "report.txt"
    mine.write_bytes(b"my own report\n")

    refused = _bugless(served_api, here, "attachment", "get", attachment_id, ok=False)
    assert refused.returncode == 4, refused
    assert "report.txt already exists here" in refused.stderr, refused.stderr
    assert "-o" in refused.stderr, refused.stderr
    assert "--force" in refused.stderr, refused.stderr
    assert [p.name for p in here.iterdir()] == ["report.txt"]  # nothing partial beside it
    assert mine.read_bytes() == b"my own report\n"

    # A path given with -o is named on purpose: it is replaced.
    _bugless(served_api, here, "attachment", "get", attachment_id, "-o", "report.txt")
    assert mine.read_bytes() == source.read_bytes()
    mine.write_bytes(b"mine again\n")
    _bugless(served_api, here, "attachment", "get", attachment_id, "--force")
    assert mine.read_bytes() == source.read_bytes()
    assert [p.name for p in here.iterdir()] == ["report.txt"]
