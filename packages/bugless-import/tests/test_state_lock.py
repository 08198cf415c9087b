"""Two runs on one state directory: the second is refused before it writes anything.

Before, both imported the same issues at once: the second recorded issues
the first had done (its done-list holding them twice) and stopped on
"trac:549 was imported by a concurrent call just now".
"""

from __future__ import annotations

import fcntl
from pathlib import Path

import pytest
from import_support import MakeSettings, find, redmine_tree

from bugless_core.errors import FailedPrecondition
from bugless_import import run_import
from bugless_import.sources.redmine import RedmineImporter
from bugless_proto import v1


async def test_a_second_run_on_a_held_state_directory_is_refused(
    make_settings: MakeSettings, tmp_path: Path, model: v1.ModelStub
) -> None:
    importer = RedmineImporter(str(redmine_tree(tmp_path, 9212)), {})
    settings = make_settings(state_dir=tmp_path / "state")
    settings.state_dir.mkdir()
    with (settings.state_dir / "redmine.lock").open("a+") as running:
        fcntl.flock(running, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as the first run holds it
        with pytest.raises(FailedPrecondition, match="another `bugless import redmine` is running"):
            await run_import(importer, settings)
        assert await find(model, "redmine:9212") == []
        dry = await run_import(importer, make_settings(state_dir=settings.state_dir, dry_run=True))
        assert dry.issues == 3, "a dry run writes nothing and needs no lock"
    report = await run_import(importer, settings)
    assert report.created == 3, "once the first run ended"
