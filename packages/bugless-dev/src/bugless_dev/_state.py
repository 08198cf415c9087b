"""The state directory of ``bugless dev``: what survives a restart, and its guards.

Layout::

    STATE/
      bugless-dev.json     # format version, who created it, remembered choices
      .lock                # flock held while a bugless dev runs on it
      .gitignore           # "*": a state dir inside a checkout is never committed
      secrets/             # page-token secret, session key, token signing key (0600)
      postgres/            # the cluster (data/), its log, the superuser password
      pki/                 # dev CA, API server certificate, bot certificate
      logs/                # one log per service

The version file is the guard against surprises: a directory written by an
incompatible ``bugless dev`` (another :data:`STATE_FORMAT`) is refused with
what to do, and so is a non-empty directory that is not a state directory at
all — ``--reset`` deletes only what this command created, never, say, a home
directory passed by mistake.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bugless_core.__about__ import __version__

#: Bumped when a state directory written by an older ``bugless dev`` can no
#: longer be used as it is (layout, secrets, database names).
STATE_FORMAT = 1
VERSION_FILE = "bugless-dev.json"


class StateDirError(Exception):
    """The state directory cannot be used; the message says why and what to do."""


@dataclass
class StateDir:
    """An opened, locked state directory.

    Attributes:
        path: The directory (absolute).
        info: The contents of the version file (format, versions, choices).
        created: True when this run created it (or reset it).
    """

    path: Path
    info: dict[str, Any] = field(default_factory=dict)
    created: bool = False
    _lock: IO[str] | None = None

    @property
    def secrets_dir(self) -> Path:
        """Secrets of the services (mode 0700)."""
        return self.path / "secrets"

    @property
    def postgres_dir(self) -> Path:
        """The PostgreSQL cluster and its files."""
        return self.path / "postgres"

    @property
    def pki_dir(self) -> Path:
        """The development certificates."""
        return self.path / "pki"

    @property
    def logs_dir(self) -> Path:
        """One log file per service."""
        return self.path / "logs"

    def secret(self, name: str, *, length: int = 32) -> str:
        """A random secret kept in ``secrets/NAME``, made on first use."""
        path = self.secrets_dir / name
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            value = secrets.token_urlsafe(length)
            write_private(path, value + "\n")
            return value

    def remember(self, **values: Any) -> None:
        """Record choices in the version file (e.g. the PostgreSQL port)."""
        self.info.update(values)
        _write_info(self.path, self.info)

    def close(self) -> None:
        """Release the lock."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file only its owner can read."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    path.chmod(0o600)


def _write_info(path: Path, info: dict[str, Any]) -> None:
    temporary = path / f".{VERSION_FILE}.tmp"
    temporary.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    temporary.replace(path / VERSION_FILE)


def _read_info(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((path / VERSION_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        msg = (
            f"--state-dir {path}: {VERSION_FILE} is unreadable ({exc}); pass --reset to start over"
        )
        raise StateDirError(msg) from exc
    if not isinstance(data, dict):
        msg = f"--state-dir {path}: {VERSION_FILE} is not a JSON object; pass --reset to start over"
        raise StateDirError(msg)
    return data


def _is_empty(path: Path) -> bool:
    return not path.exists() or not any(path.iterdir())


def _lock(path: Path) -> IO[str]:
    handle = (path / ".lock").open("a")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        msg = (
            f"another `bugless dev` is running on the state directory {path}; "
            "stop it, or pass another --state-dir"
        )
        raise StateDirError(msg) from None
    return handle


def open_state_dir(path: Path, *, reset: bool) -> StateDir:
    """Validate, lock and (with ``reset``) wipe the state directory at ``path``.

    Raises:
        StateDirError: it belongs to something else, to an incompatible
            version, or to a running ``bugless dev``.
    """
    path = path.expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise StateDirError(f"--state-dir {path}: a file, not a directory; pass another")
    try:
        info = _read_info(path) if path.exists() else None
    except StateDirError:
        if not reset:
            raise
        info = {}  # its own version file, unreadable: --reset wipes it as it says
    if info is None and not _is_empty(path):
        msg = (
            f"--state-dir {path}: it is not empty and is not a bugless dev state directory "
            f"(no {VERSION_FILE}); "
            "pass an empty or new --state-dir"
        )
        raise StateDirError(msg)
    try:
        path.mkdir(parents=True, exist_ok=True)
        lock = _lock(path)
    except OSError as exc:
        raise StateDirError(f"--state-dir {path}: cannot be used: {exc.strerror or exc}") from exc
    try:
        if info is not None and reset:
            _wipe(path)
            info = None
        if info is None:
            info = {
                "format": STATE_FORMAT,
                "created_by": f"bugless-core {__version__}",
            }
            (path / ".gitignore").write_text("# created by bugless dev\n*\n")
            _write_info(path, info)
            state = StateDir(path=path, info=info, created=True, _lock=lock)
        else:
            _check_compatible(path, info)
            state = StateDir(path=path, info=info, _lock=lock)
        for directory in (state.secrets_dir, state.pki_dir):
            directory.mkdir(mode=0o700, exist_ok=True)
        state.logs_dir.mkdir(exist_ok=True)
        return state
    except BaseException:
        lock.close()
        raise


def _check_compatible(path: Path, info: dict[str, Any]) -> None:
    found = info.get("format")
    if found != STATE_FORMAT:
        made_by = info.get("created_by", "an unknown version")
        msg = (
            f"--state-dir {path} has format {found!r} (written by {made_by}); this "
            f"bugless-core {__version__} uses format {STATE_FORMAT}. Pass --reset to delete "
            "its data and start over, or pass another --state-dir"
        )
        raise StateDirError(msg)


def _wipe(path: Path) -> None:
    """Delete the contents of a state directory (not the lock file we hold)."""
    for child in path.iterdir():
        if child.name == ".lock":
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            with contextlib.suppress(FileNotFoundError):
                child.unlink()
