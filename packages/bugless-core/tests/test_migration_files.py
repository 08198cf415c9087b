"""The migration files a package ships: numbered once each, 1..n, named as the engine reads them.

:func:`bugless_core.migrations.load_migrations` reads them before anything
touches a database, so a packaging mistake (two branches that each added the
next number, met in a rebase; a misnamed file) stops every replica at start
instead of leaving one file unapplied while the ledger says it is.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bugless_core.migrations import load_migrations

#: Makes a package ``name`` on sys.path whose ``migrations`` holds these files.
ShipPackage = Callable[[str, list[str]], str]


@pytest.fixture
def ship_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ShipPackage]:
    made: list[str] = []

    def ship(name: str, files: list[str]) -> str:
        folder = tmp_path / name
        (folder / "migrations").mkdir(parents=True)
        (folder / "__init__.py").write_text("", encoding="utf-8")
        for file in files:
            (folder / "migrations" / file).write_text("SELECT 1", encoding="utf-8")
        made.append(name)
        return name

    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield ship
    for name in made:
        sys.modules.pop(name, None)


def test_files_numbered_once_each_load_in_order(ship_package: ShipPackage) -> None:
    package = ship_package("shipped_in_order", ["0002_more.sql", "0001_first.sql", "README"])
    assert [(m.version, m.name) for m in load_migrations(package)] == [(1, "first"), (2, "more")]


def test_two_files_with_one_number_are_refused_by_name(ship_package: ShipPackage) -> None:
    package = ship_package(
        "shipped_twice",
        ["0001_first.sql", "0002_status_index.sql", "0002_descriptions.sql", "0003_more.sql"],
    )
    with pytest.raises(RuntimeError) as refused:
        load_migrations(package)
    assert str(refused.value) == (
        "shipped_twice: migration files 0002_descriptions.sql and 0002_status_index.sql "
        "share the number 0002: give the later one the next free number"
    )


def test_a_misnamed_sql_file_is_refused_not_left_unapplied(ship_package: ShipPackage) -> None:
    package = ship_package("shipped_misnamed", ["0001_first.sql", "0002_Status-Index.sql"])
    with pytest.raises(RuntimeError, match=r"'0002_Status-Index.sql' is not named NNNN_"):
        load_migrations(package)


def test_a_gap_is_refused(ship_package: ShipPackage) -> None:
    package = ship_package("shipped_with_a_gap", ["0001_first.sql", "0003_third.sql"])
    with pytest.raises(RuntimeError, match=r"without gaps, found \[1, 3\]"):
        load_migrations(package)
