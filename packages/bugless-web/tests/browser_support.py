"""A real ``bugless web serve`` process and a headless Debian chromium driven by Playwright.

Browser tests are skipped by nothing: when chromium is missing they fail with
the apt command to run, because CI treats a skip as a failure.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

from bugless_dev.stack import LocalStack, RunningService

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Where the best screenshots are copied for people to look at.
SHARED_SCREENS = Path("/tmp/bugless-screens")


def start_web_server(
    stack: LocalStack,
    *,
    extra_env: Mapping[str, str] | None = None,
    auth_port: int | None = None,
    port: int = 0,
) -> RunningService:
    """Start ``bugless web serve`` (dev mode) through the stack and wait until it is ready.

    ``auth_port`` points it at another Authenticator of the stack; ``port``
    0 lets it pick one (read back from its ready file).
    """
    extra = ["--auth", f"127.0.0.1:{auth_port}"] if auth_port else []
    return stack.start_web(
        *extra, port=port, env={"BUGLESS_WEB_DRAIN_SECONDS": "0.2", **(extra_env or {})}
    )


def require_chromium() -> None:
    """Fail (not skip) with the fix when the browser is missing."""
    if not shutil.which(CHROMIUM):
        msg = "browser tests need Debian's chromium: apt-get install -y chromium fonts-dejavu-core"
        raise RuntimeError(msg)


def save_screenshot(page: object, tmp_dir: Path, name: str, *, share: bool = True) -> Path:
    """Screenshot to the test's tmp dir, and a copy under /tmp/bugless-screens/."""
    path = tmp_dir / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    if share:
        SHARED_SCREENS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, SHARED_SCREENS / path.name)
    return path


def iter_console_problems(messages: list[str]) -> Iterator[str]:
    """Console lines that signal trouble (CSP violations, script errors)."""
    for line in messages:
        if "status of 400" in line:  # the query-error page is a 400 on purpose
            continue
        if any(word in line.lower() for word in ("error", "refused", "violat", "xss")):
            yield line
