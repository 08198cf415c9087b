"""This package's own migration files: each one in its ``migrations/`` is run, none ignored.

The backend's ledger is PostgreSQL's, with some versions run from this
package's files (0026, the pending table of the change feed). Those are read
from the directory, so a file added there is run in its version's place;
one numbered as no PostgreSQL version, or as a PostgreSQL-only one skipped
here, is refused before anything touches a database.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path

import pytest

from bugless_model_cockroach import CockroachBackend
from bugless_model_cockroach.backend import with_own_migrations
from bugless_model_postgres import PostgresBackend

#: Makes a package ``name`` on sys.path whose ``migrations`` holds these files.
ShipPackage = Callable[[str, dict[str, str]], str]


@pytest.fixture
def ship_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ShipPackage]:
    made: list[str] = []

    def ship(name: str, files: dict[str, str]) -> str:
        folder = tmp_path / name
        (folder / "migrations").mkdir(parents=True)
        (folder / "__init__.py").write_text("", encoding="utf-8")
        for file, sql in files.items():
            (folder / "migrations" / file).write_text(sql, encoding="utf-8")
        made.append(name)
        return name

    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield ship
    for name in made:
        sys.modules.pop(name, None)


def test_every_file_this_package_ships_is_run_in_its_versions_place() -> None:
    files = resources.files("bugless_model_cockroach").joinpath("migrations")
    shipped = {
        int(f.name[:4]): f.read_text(encoding="utf-8")
        for f in files.iterdir()
        if f.name.endswith(".sql")
    }
    assert 26 in shipped
    ledger = {m.version: m for m in CockroachBackend.migrations()}
    for version, sql in shipped.items():
        assert ledger[version].sql == sql
    postgres = PostgresBackend.migrations()
    assert [m.version for m in ledger.values()] == [m.version for m in postgres]
    assert ledger[8].sql == "SELECT 1"  # a PostgreSQL-only version is a no-op here


def test_a_file_added_to_the_directory_is_run_with_no_list_to_update(
    ship_package: ShipPackage,
) -> None:
    package = ship_package(
        "cockroach_added_file",
        {
            "0026_change_feed_pending.sql": "SELECT 26",
            "0030_history_status_changes.sql": "SELECT 30",
            "README": "not a migration",
        },
    )
    postgres = PostgresBackend.migrations()
    ledger = with_own_migrations(postgres, package)
    assert [(m.version, m.name) for m in ledger] == [(m.version, m.name) for m in postgres]
    by_version = {m.version: m.sql for m in ledger}
    assert by_version[26] == "SELECT 26"
    assert by_version[30] == "SELECT 30"
    assert by_version[29] == postgres[28].sql
    assert by_version[13] == "SELECT 1"


@pytest.mark.parametrize(
    ("file", "why"),
    [
        ("0999_later.sql", "999 is not one of PostgreSQL's (1.."),
        ("0013_aggregate.sql", "13 is PostgreSQL-only, a no-op here"),
    ],
)
def test_a_file_numbered_as_no_version_it_could_replace_is_refused(
    ship_package: ShipPackage, file: str, why: str
) -> None:
    package = ship_package(f"cockroach_refused_{file[:4]}", {file: "SELECT 2"})
    with pytest.raises(RuntimeError) as refused:
        with_own_migrations(PostgresBackend.migrations(), package)
    assert f"{package}: migration file {file} replaces a version" in str(refused.value)
    assert why in str(refused.value)


def test_a_misnamed_file_is_refused_not_ignored(ship_package: ShipPackage) -> None:
    package = ship_package("cockroach_misnamed", {"26_feed.sql": "SELECT 2"})
    with pytest.raises(RuntimeError, match=r"is not named NNNN_description\.sql"):
        with_own_migrations(PostgresBackend.migrations(), package)
