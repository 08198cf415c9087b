"""Running ``bugless dev`` (and other ``bugless`` commands) as subprocesses for the tests."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bugless_dev.processes import BUGLESS_COMMAND

#: Generous: a first start creates a cluster, runs migrations and starts five
#: servers, on CI machines that run other suites at the same time.
START_TIMEOUT = 300.0
URL_LINE = re.compile(r"^Web UI .*: (http://127\.0\.0\.1:(\d+))$", re.MULTILINE)
PASSWORD_LINE = re.compile(r"Password \(shown once\):\n +(\S+)\n")
EXPORT_LINE = re.compile(r"^ +export (BUGLESS_API=.*)$", re.MULTILINE)
IMPORT_EXPORT_LINE = re.compile(r"^ +export (BUGLESS_IMPORT_MODEL=.*)$", re.MULTILINE)


def clean_env() -> dict[str, str]:
    """The test's environment without BUGLESS_* settings of the developer's shell."""
    return {k: v for k, v in os.environ.items() if not k.startswith("BUGLESS_")}


def run_bugless(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run a ``bugless`` command to completion."""
    return subprocess.run(
        [*BUGLESS_COMMAND, *args],
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class DevProcess:
    """A running ``bugless dev`` and everything it printed so far."""

    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @classmethod
    def start(cls, state_dir: Path, *args: str) -> DevProcess:
        """Start ``bugless dev --state-dir STATE ARGS...`` in its own session."""
        process = subprocess.Popen(
            [*BUGLESS_COMMAND, "dev", "--state-dir", str(state_dir), *args],
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        dev = cls(process)
        dev.reader = threading.Thread(target=dev._read, daemon=True)
        dev.reader.start()
        return dev

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        """Everything printed so far (stdout and stderr)."""
        return "\n".join(self.lines) + "\n"

    def wait_for_url(self) -> str:
        """Block until the web URL line (printed once everything is ready)."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            match = URL_LINE.search(self.output)
            if match:
                return match.group(1)
            if self.process.poll() is not None:
                time.sleep(0.2)  # let the reader drain the pipe
                msg = f"bugless dev exited with {self.process.returncode}:\n{self.output}"
                raise AssertionError(msg)
            time.sleep(0.1)
        self.kill()
        raise AssertionError(f"bugless dev printed no URL in {START_TIMEOUT:.0f}s:\n{self.output}")

    def client_env(self, line: re.Pattern[str] = EXPORT_LINE) -> dict[str, str]:
        """The printed ``export BUGLESS_API=… BUGLESS_CERT=…`` line, as an environment.

        ``line``: another printed export line (``IMPORT_EXPORT_LINE``).
        """
        match = line.search(self.output)
        assert match, self.output
        env = clean_env()
        for pair in shlex.split(match.group(1)):
            name, _, value = pair.partition("=")
            env[name] = value
        return env

    def password(self) -> str | None:
        """The administrator's password, if this run printed one."""
        match = PASSWORD_LINE.search(self.output)
        return match.group(1) if match else None

    def interrupt(self, sig: signal.Signals = signal.SIGINT, timeout: float = 120.0) -> int:
        """Send ``sig`` (Ctrl-C by default) and wait for the exit code."""
        self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        if self.reader is not None:
            self.reader.join(timeout=10)
        return code

    def wait(self, timeout: float = 120.0) -> int:
        """Wait for it to exit by itself."""
        code = self.process.wait(timeout=timeout)
        if self.reader is not None:
            self.reader.join(timeout=10)
        return code

    def kill(self) -> None:
        """Last resort in a failing test: kill it (its children die with it)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
