"""The previous release, for the live-upgrade drills: its code, extracted from git, and schemas.

``test_live_upgrade.py`` (the Model's migration under old replicas) and
``test_live_upgrade_services.py`` (the Authenticator's and the notifier's) run
the code just before a service's newest migration next to this checkout's;
this module finds that code with ``git log``, extracts it with ``git archive``
and reads a schema's version, so both drills take "the previous release" alike.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[3]
MIGRATIONS = "packages/bugless-model-postgres/src/bugless_model_postgres/migrations"
AUTH_MIGRATIONS = "packages/bugless-auth/src/bugless_auth/migrations"
NOTIFY_MIGRATIONS = "packages/bugless-notify/src/bugless_notify/migrations"
MODEL_SERVICE = "bugless.v1.Model"
AUTH_SERVICE = "bugless.v1.Authenticator"


@dataclass(frozen=True)
class PreviousRelease:
    """The code just before the newest Model migration, ready to run.

    Attributes:
        commit: The commit it was extracted from.
        added: The Model's migration files this checkout has and it lacks.
        auth_added: The Authenticator's (none when no migration of its came since).
        notify_added: The notifier's (likewise).
        python_path: Its packages' ``src`` folders, for ``PYTHONPATH``.
    """

    commit: str
    added: tuple[str, ...]
    auth_added: tuple[str, ...]
    notify_added: tuple[str, ...]
    python_path: str


def _git(*args: str) -> bytes:
    try:
        done = subprocess.run(
            ["git", "-C", str(ROOT), *args], check=True, capture_output=True, timeout=120
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        msg = (
            "the live-upgrade drill needs the repository's history (a git clone, not a shallow "
            f"copy: git fetch --unshallow): git {' '.join(args)} failed: {exc} "
            f"{detail.decode(errors='replace').strip()}"
        )
        raise AssertionError(msg) from exc
    return done.stdout


def previous_release(
    directory: Path, folder: str = MIGRATIONS, *, newest: int = 1
) -> PreviousRelease:
    """Extract the code before the commit that added ``folder``'s ``newest``-th newest migration.

    By default the code before the newest Model migration. ``folder`` names
    another service's migrations (:data:`AUTH_MIGRATIONS`, :data:`NOTIFY_MIGRATIONS`),
    and ``newest=2`` goes back before the second newest file (two migrations
    that came in two commits, as the Authenticator's certificate sessions did).
    """
    names = sorted(p.name for p in (ROOT / folder).glob("*.sql"))
    assert len(names) >= newest, f"{folder} has {len(names)} migrations, not {newest}"
    path = f"{folder}/{names[-newest]}"
    # --follow: a file renamed since it was added (a second 0030 renumbered to
    # 0031) counts from the commit that added it, not from the rename, whose
    # parent held both files and never ran.
    adding = (
        _git("log", "-1", "--follow", "--diff-filter=A", "--format=%H", "--", path).decode().strip()
    )
    assert adding, f"git log finds no commit adding {path}"
    commit = _git("rev-parse", f"{adding}^").decode().strip()
    archive = _git("archive", "--format=tar", commit, "packages")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(directory, filter="data")
    sources = sorted(str(p) for p in (directory / "packages").glob("*/src"))
    assert sources, f"{commit} has no packages/*/src"
    return PreviousRelease(
        commit,
        _added_since(commit, MIGRATIONS),
        _added_since(commit, AUTH_MIGRATIONS),
        _added_since(commit, NOTIFY_MIGRATIONS),
        os.pathsep.join(sources),
    )


def _added_since(commit: str, folder: str) -> tuple[str, ...]:
    """Migration files of ``folder`` this checkout has (committed or not) and ``commit`` lacks."""
    before = set(_git("ls-tree", "--name-only", f"{commit}:{folder}").decode().split())
    return tuple(sorted({p.name for p in (ROOT / folder).glob("*.sql")} - before))


async def schema_version(database_url: str, schema: str = "bugless") -> int:
    """A schema's version (the Model's by default): the highest row of its migration ledger."""
    conn = await asyncpg.connect(database_url)
    try:
        version = await conn.fetchval(f"SELECT max(version) FROM {schema}.schema_migrations")
    finally:
        await conn.close()
    assert isinstance(version, int)
    return version
