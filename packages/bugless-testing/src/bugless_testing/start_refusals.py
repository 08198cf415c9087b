"""Run ``bugless`` commands that must refuse to start, and check how they refused.

A bad option (a file that is missing or holds the wrong thing, a client
certificate without its CA) must stop a command with one line naming the
option, exit status 2 and no traceback, before it connects anywhere. The
tests of the serve commands (bugless-dev) and of ``bugless import`` check
that the same way: the command as a real subprocess with the shell's
``BUGLESS_*`` variables removed, every address pointing at a listening
"canary" socket that must have accepted nothing.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from bugless_dev.processes import BUGLESS_COMMAND


def clean_environment(added: Mapping[str, str] = {}) -> dict[str, str]:
    """The test's environment less the shell's ``BUGLESS_*`` settings, plus ``added``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BUGLESS_")}
    return {**clean, **added}


def run_bugless(
    args: Sequence[str], env: Mapping[str, str] = {}, *, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``bugless args`` to its end in :func:`clean_environment` with ``env`` added."""
    return subprocess.run(
        [*BUGLESS_COMMAND, *args],
        env=clean_environment(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextmanager
def canary_socket() -> Iterator[socket.socket]:
    """A listening loopback socket a refused command's addresses point at.

    Bound to port 0 and read back (no race for a "free" port); non-blocking,
    so :func:`assert_unvisited` can ask whether anything connected.
    """
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        yield listener


def canary_address(canary: socket.socket) -> str:
    """``host:port`` of the canary, for ``--model``, ``--auth``, database URLs."""
    return f"127.0.0.1:{canary.getsockname()[1]}"


def assert_unvisited(canary: socket.socket) -> None:
    """Fail if anything connected to the canary since it was last asked."""
    try:
        connection, peer = canary.accept()
    except BlockingIOError:
        return
    connection.close()
    msg = f"the refused command connected to the canary (from {peer})"
    raise AssertionError(msg)


def assert_one_line_refusal(
    result: subprocess.CompletedProcess[str], named: str, path: Path
) -> str:
    """Check a refusal naming option ``named`` and file ``path``; return its line.

    One line on stderr starting ``Error: <option> <file>: ``, exit status 2
    (a usage error), and no traceback anywhere in the output.
    """
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith(f"Error: {named} {path}: "), lines[0]
    assert result.returncode == 2, output
    return lines[0]
