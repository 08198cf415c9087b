"""``bugless attachment get`` without ``-o`` writes a plain file name, in the current directory.

The name is the server's. The Model stores only a sanitised last segment,
so no name can be made to reach the CLI with a directory in it: the naming
function is checked alone, and a real download through the CLI (the
served API over mutual TLS, on the real Model) lands where it should.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

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


def test_the_cli_writes_the_attachments_name_in_the_current_directory(
    served_api: dict[str, str], tmp_path: Path
) -> None:
    def bugless(*args: str, cwd: Path = tmp_path) -> str:
        result = subprocess.run(
            [*BUGLESS_COMMAND, *args], env=served_api, capture_output=True, text=True,
            timeout=180, check=False, cwd=cwd,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout

    component = json.loads(bugless("component", "create", f"CliNames-{os.getpid()}", "--json"))
    issue = json.loads(
        bugless("issue", "create", "--title", "x", "--component", str(component["id"]), "--json")
    )
    source = tmp_path / "notes.txt"
    source.write_bytes(b"kept here\n" * 1000)
    attached = json.loads(bugless("issue", "attach", str(issue["id"]), str(source), "--json"))
    here = tmp_path / "here"
    here.mkdir()
    shown = json.loads(bugless("attachment", "get", attached["id"], "--json", cwd=here))
    assert shown["name"] == "notes.txt"
    assert [p.name for p in here.iterdir()] == ["notes.txt"]
    assert (here / "notes.txt").read_bytes() == source.read_bytes()
