"""The progress bar of a run, shown only where someone watches it."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from bugless_import.report import issue_rate


class Progress:
    """A one-line progress bar on standard error (only where someone sees it)."""

    def __init__(self, total: int, label: str, stream: TextIO | None) -> None:
        self.total, self.label, self.stream = total, label, stream
        self.done = 0
        self.started = time.perf_counter()
        self._shown = 0.0

    def advance(self) -> None:
        """One more issue done (or skipped); redrawn at most every 0.2 s, and at the end."""
        self.done += 1
        now = time.perf_counter()
        if self.stream is not None and (now - self._shown > 0.2 or self.done == self.total):
            self._shown = now
            share = self.done / self.total if self.total else 1.0
            bar = "#" * int(share * 30)
            rate = issue_rate(self.done, max(now - self.started, 1e-6))
            self.stream.write(f"\r{self.label} [{bar:<30}] {self.done}/{self.total} {rate}")
            self.stream.flush()

    def close(self) -> None:
        """End the bar's line, so that what follows starts on its own."""
        if self.stream is not None:
            self.stream.write("\n")


def default_progress_stream() -> TextIO | None:
    """Standard error when it is a terminal (a progress bar in a log is noise)."""
    return sys.stderr if sys.stderr.isatty() else None
