"""Run README.md's quick-start install as a newcomer would: a fresh venv, its own pip.

The quick start is one shell line, ``python3 -m venv .venv && … pip install
./packages/… && .venv/bin/bugless dev --demo``. The README examples test runs a
``bugless dev --demo`` from the test environment (installed by uv), so nothing
proved that the line itself installs: it did not, once — the pip that Python
3.11 bundles gave up on the OpenTelemetry packages' pins (ResolutionImpossible)
where uv and a current pip resolve them. This script reads the block after the
``<!-- ci:quick-start -->`` marker, runs everything before its last command in
an empty directory that sees the checkout's ``packages/`` (so a developer's own
``.venv`` is never touched), then runs its last command as written — only its
ports (0: free ones) and state directory come from the environment — until it
prints the web UI's address, and stops it with Ctrl-C (SIGINT), which must
exit 0. A quick start missing a package fails here (it did: the notifier's,
after notifications landed, so ``bugless dev`` died once the demo was seeded).

Usage: ``python scripts/quick_start_check.py`` (``nox -s install_check`` runs it).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- ci:quick-start -->"
#: The line's last command: run as written, after the install part.
START = ".venv/bin/bugless dev --demo"
#: How long the install's tracker may take to answer (PostgreSQL's cluster, the demo seed).
START_SECONDS = 600
#: The line ``bugless dev`` prints once everything answers.
READY = re.compile(r"^Web UI \(sign in as `\w+`\): (http://\S+)$", re.M)


def quick_start(readme: Path) -> str:
    """The shell block right after the marker, as one line."""
    lines = readme.read_text().splitlines()
    try:
        at = lines.index(MARKER)
    except ValueError:
        raise SystemExit(f"{readme.name} has no {MARKER} before its quick start") from None
    if not lines[at + 1].startswith("```"):
        raise SystemExit(f"{readme.name}: {MARKER} must be right before a fenced block")
    end = lines.index("```", at + 2)
    return " ".join(line.strip() for line in lines[at + 2 : end])


def install_part(command: str) -> str:
    """Everything before the final ``bugless dev --demo``, which must be the last step."""
    head, sep, last = command.rpartition("&&")
    if not sep or last.strip() != START:
        raise SystemExit(f"the quick start must end with `&& {START}`; it is: {command}")
    return head.strip()


def run_tracker(here: Path) -> str:
    """Run the quick start's last command in ``here`` until ready, then Ctrl-C; its output."""
    state = here / "state"
    state.mkdir()
    # As root, PostgreSQL runs as another user, who must reach the state directory.
    here.chmod(0o755)
    env = {
        **os.environ,
        "BUGLESS_DEV_PORT": "0",
        "BUGLESS_DEV_API_PORT": "0",
        "BUGLESS_DEV_STATE_DIR": str(state / ".bugless"),
    }
    log = here / "bugless-dev.log"
    print(f"+ {START}  (ports 0, state in {state})", flush=True)
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["bash", "-c", f"exec {START}"], cwd=here, env=env, stdout=out, stderr=out
        )
        try:
            deadline = time.monotonic() + START_SECONDS
            while not READY.search(log.read_text()):
                if process.poll() is not None:
                    raise SystemExit(
                        f"bugless dev exited with {process.returncode}:\n{log.read_text()}"
                    )
                if time.monotonic() > deadline:
                    raise SystemExit(
                        f"bugless dev not ready in {START_SECONDS} s:\n{log.read_text()}"
                    )
                time.sleep(1)
            process.send_signal(signal.SIGINT)
            code = process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    output = log.read_text()
    if code != 0:
        raise SystemExit(f"bugless dev exited with {code} after Ctrl-C:\n{output}")
    return output


def main() -> int:
    """Install as the README says, run the tracker, stop it; 0 when all of it worked."""
    install = install_part(quick_start(ROOT / "README.md"))
    with tempfile.TemporaryDirectory(prefix="bugless-quick-start-") as directory:
        here = Path(directory)
        (here / "packages").symlink_to(ROOT / "packages", target_is_directory=True)
        print(f"+ {install}", flush=True)
        subprocess.run(["bash", "-euo", "pipefail", "-c", install], cwd=here, check=True)
        output = run_tracker(here)
    ready = READY.search(output)
    assert ready is not None
    print(
        f"the quick start installs and runs: the web UI answered at {ready.group(1)}, Ctrl-C exit 0"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
