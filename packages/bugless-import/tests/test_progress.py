"""The progress bar: counts to N/N where someone watches, and is silent otherwise."""

from __future__ import annotations

import asyncio
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from import_support import MakeSettings, redmine_tree

from bugless_dev.stack import LocalStack
from bugless_import import run_import
from bugless_import.progress import default_progress_stream
from bugless_import.sources.redmine import RedmineImporter
from bugless_testing.program import BUGLESS_SCRIPT

SHOWN = re.compile(r"importing redmine \[(#*) *\] (\d+)/(\d+) [\d.]+ issues?/s")


def _counts(text: str) -> list[tuple[int, int]]:
    """Every (done, total) the bar showed, in order."""
    return [(int(m[2]), int(m[3])) for m in SHOWN.finditer(text)]


async def test_the_bar_counts_every_issue_to_the_total(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    stream = io.StringIO()
    importer = RedmineImporter(str(redmine_tree(tmp_path, 9012)), {})
    report = await run_import(
        importer, make_settings(quiet=False, batch_size=1, concurrency=1), progress=stream
    )
    assert report.created + report.unchanged + report.extended == 3
    shown = _counts(stream.getvalue())
    assert shown[-1] == (3, 3)
    assert [done for done, _ in shown] == sorted({done for done, _ in shown}), "only forward"
    assert stream.getvalue().endswith("/s\n"), "the bar's line is ended once, at the end"
    assert f"[{'#' * 30}]" in stream.getvalue()


async def test_quiet_writes_nothing(make_settings: MakeSettings, tmp_path: Path) -> None:
    stream = io.StringIO()
    importer = RedmineImporter(str(redmine_tree(tmp_path, 9012)), {})
    await run_import(importer, make_settings(quiet=True), progress=stream)
    assert stream.getvalue() == ""


def test_the_bar_goes_to_standard_error_only_when_it_is_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert default_progress_stream() is None
    main, secondary = os.openpty()
    with os.fdopen(secondary, "w") as terminal:
        monkeypatch.setattr(sys, "stderr", terminal)
        assert default_progress_stream() is terminal
    os.close(main)


def _run_on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run ``args`` with standard error on a pseudo-terminal; its exit status and output."""
    main, secondary = os.openpty()
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=secondary)
    os.close(secondary)
    output = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # EIO: every holder of the terminal's other end is gone
            break
        if not chunk:
            break
        output += chunk
    os.close(main)
    return process.wait(), output.decode("utf-8", "replace")


async def test_the_command_shows_the_bar_on_a_terminal(
    tmp_path: Path, *, bugless_stack: LocalStack, import_token: str
) -> None:
    files = bugless_stack.pki.service_certificate("import")
    args = [
        BUGLESS_SCRIPT, "import", "redmine", str(redmine_tree(tmp_path, 9012)),
        "--model", f"{bugless_stack.model.host}:{bugless_stack.model.port}",
        "--auth", f"{bugless_stack.auth.host}:{bugless_stack.auth.port}",
        "--state-dir", str(tmp_path / "state"),
        "--tls-ca", str(bugless_stack.pki.ca_file), "--tls-cert", str(files.cert),
        "--tls-key", str(files.key),
    ]  # fmt: skip
    env = {**os.environ, "BUGLESS_IMPORT_TOKEN": import_token}
    code, shown = await asyncio.to_thread(_run_on_a_terminal, args, env)
    assert code == 0, shown
    assert _counts(shown)[-1] == (3, 3)
    code, quiet = await asyncio.to_thread(_run_on_a_terminal, [*args, "--quiet"], env)
    assert code == 0, quiet
    assert _counts(quiet) == []
    assert "importing redmine" not in quiet
