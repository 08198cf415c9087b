"""Every shell example in every README runs as written against ``bugless dev --demo``.

A README marks each fenced shell block (sh, bash, shell, console) with an
HTML comment on the line before it:

- ``<!-- example: run -->``: the test runs it (``bash -euo pipefail``), in a
  shell where the ``export`` line ``bugless dev`` prints has been pasted
  (``BUGLESS_API``/``CERT``/``KEY``/``CA``) and so has its ``Database`` line
  (``BUGLESS_DEV_DATABASE_URL``), with ``bugless``, ``grpcurl`` and ``jq``
  on ``PATH``. Each block stands alone.
- ``<!-- example: skip: REASON -->``: it cannot run here (it installs
  packages, starts a deployment's servers, streams forever, ...), and says why.

An unmarked shell block fails the first test, so no new example escapes.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dev_process import DevProcess

ROOT = Path(__file__).resolve().parents[4]
FENCE = re.compile(r"^```(sh|bash|shell|console)\s*$")
RUN = "<!-- example: run -->"
SKIP = re.compile(r"^<!-- example: skip: \S.* -->$")
#: README.md's own "run the tests" command, which CI runs by definition.
CI_COMMAND = "<!-- ci:test-command -->"
#: README.md's quick start, which ``nox -s install_check`` installs with plain pip
#: (scripts/quick_start_check.py) and the ``demo_shell`` fixture below starts.
QUICK_START = "<!-- ci:quick-start -->"
DATABASE_LINE = re.compile(r"^Database \(superuser\): export (BUGLESS_DEV_DATABASE_URL=.+)$", re.M)


@dataclass(frozen=True)
class Example:
    """One marked shell block: where it is, whether it runs, its text."""

    path: Path
    line: int
    run: bool
    text: str

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def readmes() -> list[Path]:
    """Every README of the repository (the root, packages, deploy, docs...)."""
    found = [ROOT / "README.md", *ROOT.glob("*/README.md"), *ROOT.glob("*/*/README.md")]
    return sorted({p for p in found if ".venv" not in p.parts and ".bugless" not in p.parts})


def shell_blocks(path: Path) -> Iterator[tuple[int, str, str]]:
    """(line number, marker line before it, text) of each fenced shell block."""
    lines = path.read_text().splitlines()
    index = 0
    while index < len(lines):
        if FENCE.match(lines[index]):
            marker = lines[index - 1].strip() if index else ""
            end = index + 1
            while end < len(lines) and lines[end].strip() != "```":
                end += 1
            yield index + 1, marker, "\n".join(lines[index + 1 : end])
            index = end
        index += 1


def examples() -> list[Example]:
    """The runnable and skipped examples of every README."""
    return [
        Example(path, line, marker == RUN, text)
        for path in readmes()
        for line, marker, text in shell_blocks(path)
        if marker == RUN
    ]


def test_every_shell_example_says_whether_it_runs() -> None:
    unmarked = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in readmes()
        for line, marker, _ in shell_blocks(path)
        if marker not in {RUN, CI_COMMAND, QUICK_START} and not SKIP.match(marker)
    ]
    assert not unmarked, (
        f"shell blocks without {RUN} or <!-- example: skip: REASON --> before them: {unmarked}"
    )
    assert len(examples()) >= 5


@pytest.fixture(scope="module")
def demo_shell() -> Iterator[tuple[dict[str, str], Path]]:
    """``bugless dev --demo`` on free ports; the environment of a shell its lines were pasted in.

    The state dir is outside pytest's 0700 temporary root: as root, PostgreSQL
    runs as ``embedded_postgres`` and must traverse every directory above it.
    """
    home = Path(tempfile.mkdtemp(prefix="bugless-readme-"))
    home.chmod(0o755)
    dev = DevProcess.start(home / ".bugless", "--port", "0", "--api-port", "0", "--demo")
    try:
        dev.wait_for_url()
        env = dev.client_env()
        database = DATABASE_LINE.search(dev.output)
        assert database, dev.output
        name, _, value = shlex.split(database.group(1))[0].partition("=")
        env[name] = value
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["HOME"] = str(home)
        yield env, home
    finally:
        code = dev.interrupt()
        shutil.rmtree(home, ignore_errors=True)
        assert code == 0, dev.output


@pytest.mark.parametrize("example", examples(), ids=lambda example: example.name)
def test_example_runs_as_written(example: Example, demo_shell: tuple[dict[str, str], Path]) -> None:
    env, home = demo_shell
    assert shutil.which("jq", path=env["PATH"]), "jq is needed (apt-get install jq)"
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", example.text],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        # A bound on a hung command, not a speed check: the CLI example is ~20
        # `bugless` processes, and at load 15 (CI sharing two cores with other
        # work) each took over 10 s to start and finish; 300 s was not enough.
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, (
        f"{example.name} exited with {done.returncode}:\n{example.text}\n"
        f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
    )
