"""Logging set-up shared by every bugless process.

In production each log record is one JSON object on one line, which log
collectors (Fluent Bit, Vector, Cloud Logging, Loki) ingest without parsing
rules, keeping the ``extra={...}`` fields a record was logged with as fields
that can be searched. On a terminal the same records read as text, with the
extra fields appended as ``key=value``.

Several processes may write to one stream: ``bugless web serve --workers N``
forks N workers that share the pod's standard error with their parent, and
their lines interleave. So every JSON record names its process (``pid``) and,
in a numbered worker, the worker (``worker``, 0 to N-1, which unlike the pid
stays the same slot across pods and restarts); text lines name the worker.
"""

from __future__ import annotations

import json as jsonlib
import logging
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

from bugless_core.settings import setting

#: Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD_ATTRIBUTES = frozenset(
    logging.LogRecord("", logging.INFO, "", 0, "", (), None).__dict__
) | {"message", "asctime", "taskName"}


def _extra_fields(record: logging.LogRecord) -> dict[str, object]:
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _STANDARD_ATTRIBUTES and not key.startswith("_")
    }


@dataclass
class _ProcessIdentity:
    """What names this process in its records besides its pid (one per process, as the pid)."""

    worker: int | None = None


_PROCESS = _ProcessIdentity()


def set_worker(index: int | None) -> None:
    """Name this process worker ``index`` in every record logged from now on (None: not one).

    Called by a process forked to serve beside others (the web tier's
    ``--workers``), first thing after the fork: the handler and its
    formatter were made before it, in the parent, and are inherited.
    """
    _PROCESS.worker = index


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON.

    The fixed keys are ``time`` (ISO 8601, UTC, milliseconds), ``level``,
    ``logger``, ``message``, ``pid`` (the process that logged it) and, in a
    numbered worker (:func:`set_worker`), ``worker``; then every ``extra``
    field (which cannot overwrite a fixed key), and
    ``exception``/``stack`` with the formatted traceback when there is one.
    Values JSON cannot encode are written as their ``str()``, so that a log
    call never fails because of what it logs.
    """

    def format(self, record: logging.LogRecord) -> str:
        """Return ``record`` as a single line of JSON."""
        document: dict[str, object] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if _PROCESS.worker is not None:
            document["worker"] = _PROCESS.worker
        for key, value in _extra_fields(record).items():
            document.setdefault(key, value)
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        return jsonlib.dumps(document, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Formats a record for people: ``time LEVEL logger: message key=value ...``.

    In a numbered worker (:func:`set_worker`) the pairs begin with ``worker=N``.
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """Return ``record`` as text, its extra fields appended as ``key=value``."""
        text = super().format(record)
        extra = _extra_fields(record)
        if _PROCESS.worker is not None:
            extra = {"worker": _PROCESS.worker, **extra}
        if not extra:
            return text
        first_line, newline, rest = text.partition("\n")
        pairs = " ".join(f"{key}={value!r}" for key, value in extra.items())
        return f"{first_line} {pairs}{newline}{rest}"


class _BuglessHandler(logging.StreamHandler[TextIO]):
    """Marks the handler :func:`configure_logging` installed, to replace it later."""


def configure_logging(
    level: int | str = logging.INFO, json: bool = True, *, stream: TextIO | None = None
) -> None:
    """Send every log record of the process to ``stream`` as JSON lines or text.

    Called once at start-up by the CLI; calling it again replaces the handler
    it installed before and leaves any other handler (pytest's, say) alone.
    Records go to standard error so that commands printing results (``--json``)
    keep standard output clean.

    Args:
        level: Lowest level logged, as a number or a name (``"info"``, ``"DEBUG"``).
        json: One JSON object per line (production) rather than text (a terminal).
        stream: Where to write; standard error by default.

    Raises:
        ValueError: ``level`` is not a level name.
    """
    if isinstance(level, str):
        named = logging.getLevelNamesMapping().get(level.upper())
        if named is None:
            names = ", ".join(
                name.lower() for name in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
            )
            raise ValueError(f"unknown log level {level!r}; use one of {names}")
        level = named
    handler = _BuglessHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter() if json else TextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _BuglessHandler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)


@dataclass(frozen=True, kw_only=True)
class LogSettings:
    """How a process logs (every service command has these options).

    Attributes:
        level: The lowest level written.
        json: One JSON object per line (for log collectors) instead of text.
    """

    level: str = setting(
        "INFO",
        flag="--log-level",
        env="BUGLESS_LOG_LEVEL",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="The lowest level logged.",
    )
    json: bool = setting(
        False,
        flag="--log-json/--log-text",
        env="BUGLESS_LOG_JSON",
        help="One JSON object per log line (for log collectors).",
    )

    def configure(self) -> None:
        """Apply these settings to the root logger (see :func:`configure_logging`)."""
        configure_logging(self.level, json=self.json)
