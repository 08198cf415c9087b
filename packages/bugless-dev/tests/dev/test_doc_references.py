"""Every test file and test the docs cite as holding a promise exists.

docs/upgrades.md says "each promise names the test that holds it", and
backup.md, deploy/README.md and the packages' READMEs do the same: an
operator reads ``test_postgres_migrations.py::test_open_refuses_...`` as
"this is checked in CI". A renamed or moved test leaves such a sentence
citing nothing, and no other test notices.

The forms cited, each in backticks:

- ``path/to/test_x.py`` or ``path/to/x.py``: a file, relative to the
  repository, the page's folder, its ``src/``, ``packages/`` or ``deploy/``
  (``bugless_web/builds.py``, ``tests/test_wire.py`` in a package's README);
- ``test_x.py`` alone: a test file somewhere in the repository;
- ``path.py::test_name``: a function of that file;
- ``::test_name`` or a bare ``test_name``: a function of the file the page
  cited last before it (upgrades.md's "``a.py::test_one``, ``::test_two``").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from docs_support import ROOT, pages

#: A backticked file (``.py``) with an optional ``::test``, or a backticked test alone.
_REFERENCE = re.compile(
    r"`(?P<path>(?:[\w.-]+/)*[\w.-]+\.py)(?:::(?P<test>\w+)(?:\[[^`]*\])?)?`"
    r"|`(?:::)?(?P<bare>test_\w+)`"
)


@dataclass(frozen=True)
class Cited:
    """Where a page cites a file (and maybe a test in it), as resolved on disk."""

    where: str
    files: tuple[Path, ...]
    test: str | None


def _candidates(page: Path, path: str) -> list[Path]:
    if "/" not in path:
        return [p for p in ROOT.glob(f"**/{path}") if ".venv" not in p.parts]
    bases = [ROOT, page.parent, page.parent / "src", ROOT / "packages", ROOT / "deploy"]
    bases += sorted(ROOT.glob("packages/*/src"))
    return sorted({base / path for base in bases if (base / path).is_file()})


def problems_of(page: Path, text: str) -> list[str]:
    """What ``text`` (the content of ``page``) cites that does not exist."""
    name = page.relative_to(ROOT) if page.is_relative_to(ROOT) else page
    found: list[str] = []
    last: list[Path] | None = []  # None: the file cited last is missing (already said)
    for match in _REFERENCE.finditer(text):
        where = f"{name}:{text.count(chr(10), 0, match.start()) + 1}"
        path, test = match.group("path"), match.group("test") or match.group("bare")
        if path is not None:
            # A bare non-test name is prose (web's README: "`setup.py` stays text").
            if "/" not in path and not path.startswith("test_"):
                continue
            files = _candidates(page, path)
            if not files:
                found.append(f"{where}: no file {path}")
                last = None
                continue
            last = files
        elif last is None:
            continue
        elif not last:
            found.append(f"{where}: {test} cited before any file")
            continue
        if test is not None and not any(
            re.search(rf"^(?:async )?def {test}\(", f.read_text(), re.M) for f in last
        ):
            cited = ", ".join(str(f.relative_to(ROOT)) for f in last)
            found.append(f"{where}: no test {test} in {cited}")
    return found


def test_every_cited_test_exists() -> None:
    problems = [problem for page in pages() for problem in problems_of(page, page.read_text())]
    assert not problems, "\n".join(problems)


def test_a_missing_or_misattributed_test_is_found() -> None:
    page = ROOT / "docs" / "upgrades.md"
    postgres = "packages/bugless-model-postgres/tests/test_postgres_migrations.py"
    cockroach = "packages/bugless-model-cockroach/tests/test_cockroach_migrations.py"
    text = (
        f"(`{postgres}::test_open_refuses_a_schema_newer_than_the_code`,\n"
        "`::test_open_refuses_an_unmigrated_database`; `test_peer_versions.py`)\n"
        f"`{cockroach}`, then `::test_open_refuses_an_unmigrated_database`\n"
        "`packages/bugless-api/tests/test_gone.py` and `::test_renamed_away`\n"
    )
    assert problems_of(page, text) == [
        f"docs/upgrades.md:3: no test test_open_refuses_an_unmigrated_database in {cockroach}",
        "docs/upgrades.md:4: no file packages/bugless-api/tests/test_gone.py",
    ]
    assert problems_of(page, "`::test_alone`") == [
        "docs/upgrades.md:1: test_alone cited before any file"
    ]
